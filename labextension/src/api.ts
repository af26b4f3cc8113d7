/**
 * The server extension's REST API (`<base>/clusterlab/api/...`), typed.
 *
 * Every refusal is `{"error": ..., "field": ...}` with a 4xx status; it is
 * raised here as an `APIError` so forms can put the message next to the field.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export type JobStatus = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';
export const FINAL_STATUSES: JobStatus[] = ['completed', 'failed', 'cancelled'];

export interface ITemplate {
  id: string;
  name: string;
  version: number;
  kind: string;
  category: string;
  description: string;
  icon: string;
  default_profile: string | null;
  parameters: { [key: string]: any };
}

export interface IAvailability {
  state: 'free' | 'queue' | 'impossible';
  reason: string;
}

export interface IProfile {
  id: string;
  display_name: string;
  description: string;
  cpus: number;
  memory_gb: number;
  gpus: number;
  max_hours: number;
  default_hours: number;
  summary: string;
  availability?: IAvailability;
}

export interface IProgress {
  epoch: number;
  epochs: number;
  fraction: number;
  metrics: { [name: string]: number };
}

export interface IJob {
  id: string;
  name: string;
  template: string;
  params: { [key: string]: any };
  profile: string;
  hours: number;
  backend: string;
  folder: string;
  output_path?: string | null;
  status: JobStatus;
  scheduler_id: string | null;
  reason: string | null;
  node: string | null;
  exit_code: number | null;
  rerun_of: string | null;
  submit_time: string | null;
  start_time: string | null;
  end_time: string | null;
  progress?: IProgress | null;
  /** whether it has written TensorBoard events (an inference job writes none) */
  tensorboard?: boolean;
}

export interface IMetricPoint {
  step: number;
  epoch: number;
  epochs: number;
  time: number;
  metrics: { [name: string]: number };
}

export interface ILogChunk {
  id: string;
  offset: number;
  text: string;
  status: JobStatus;
  done: boolean;
}

export interface ITensorBoardStatus {
  running: boolean;
  url: string | null;
  jobs: string[];
}

export interface IGPUStatus {
  granted: string[];
  gpus: { [key: string]: any }[];
  message: string;
}

export interface ISubmission {
  template?: string;
  name: string;
  params: { [key: string]: any };
  profile: string;
  hours: number;
}

/** A refusal by the server: the message, and the field it names ("params.epochs", "name", ...). */
export class APIError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly field: string | null
  ) {
    super(message);
  }
}

export async function requestAPI<T>(path: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'clusterlab', 'api', path);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new APIError(`the server cannot be reached: ${error}`, 0, null);
  }
  const text = await response.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = data?.error ?? (text || response.statusText);
    throw new APIError(message, response.status, data?.field ?? null);
  }
  return data as T;
}

export function postJSON<T>(path: string, body: unknown): Promise<T> {
  return requestAPI<T>(path, { method: 'POST', body: JSON.stringify(body) });
}
