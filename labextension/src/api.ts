/**
 * The server extension's REST API (`<base>/clusterlab/api/...`), typed.
 *
 * Every refusal is `{"error": ..., "field": ...}` with a 4xx status; it is
 * raised here as an `APIError` so forms can put the message next to the field.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export type JobStatus = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled' | 'pruned';
/** `pruned`: a trial its experiment stopped early (final, neither cancelled nor failed) */
export const FINAL_STATUSES: JobStatus[] = ['completed', 'failed', 'cancelled', 'pruned'];

/** A metric a template declares (`metrics:` in its template.yaml), for the search form. */
export interface IMetricSpec {
  title?: string;
  goal?: 'maximize' | 'minimize';
}

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
  /** what a training template reports per epoch; the first is an experiment's default metric */
  metrics?: { [name: string]: IMetricSpec };
  /** a script's metrics are whatever the user's own code reports */
  any_metric?: boolean;
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
  /** where it runs or ran: one node, or several joined by commas ("node1,node2") */
  node: string | null;
  exit_code: number | null;
  rerun_of: string | null;
  submit_time: string | null;
  start_time: string | null;
  end_time: string | null;
  progress?: IProgress | null;
  /** whether it has written TensorBoard events (an inference job writes none) */
  tensorboard?: boolean;
  /** a trial of an experiment: its id and the trial's number */
  experiment_id?: string | null;
  trial?: number | null;
  /** started again after a failure that was not its own (see docs/experiments.md) */
  restarts?: number;
  max_restarts?: number;
  restart_history?: { time: string; reason: string }[];
  /** while queued: when the scheduler expects it to start (Slurm's backfill estimate), if it says */
  expected_start?: string | null;
  /** times the scheduler itself requeued it after a node failed under it (Slurm's --requeue) */
  requeues?: number;
  /** the project it belongs to ("default" unless one was given) */
  project?: string;
  /** what it read: dataset versions and other jobs' outputs, pinned at submit */
  inputs?: IInput[];
}

/**
 * A job's input as the server resolved it (docs/datasets.md): a dataset's
 * version, or another job's output, each with its digest.
 */
export interface IInput {
  as: string;
  dataset?: string;
  version?: number;
  job?: string;
  job_name?: string;
  digest: string;
  shared?: boolean;
  files: number;
  bytes: number;
  path?: string;
  /** the parameter that named it (its value in params is the reference: "shapes:2", "job:<id>") */
  param?: string;
}

/** An input as a request names it, pinned: a dataset's version, or a job's output. */
export interface IInputEntry {
  as: string;
  dataset?: string;
  version?: number;
  job?: string;
}

/** A job that read a dataset's version (`GET datasets/{name}/{version}`). */
export interface IUsedBy {
  id: string;
  name: string;
  status: JobStatus;
  as: string;
}

/** One version of a dataset: frozen at creation. */
export interface IDatasetVersion {
  name: string;
  version: number;
  digest: string;
  /** how many files */
  files: number;
  bytes: number;
  /** stored anew by this version (the rest it shares with earlier ones) */
  new_bytes?: number;
  created: string;
  creator: string;
  description: string;
  project: string;
  shared: boolean;
  source?: string;
  path?: string;
  /** `GET datasets/{name}/{version}` only */
  used_by?: IUsedBy[];
}

export interface IDataset {
  name: string;
  /** the site's (read only), not the user's own */
  shared: boolean;
  description: string;
  project: string;
  latest: number;
  /** newest first */
  versions: IDatasetVersion[];
}

export interface IDatasetPreview {
  images: { path: string; size: number }[];
  table: { path: string; header: string[]; rows: string[][] } | null;
}

/** `POST datasets` */
export interface IDatasetRequest {
  name: string;
  folder: string;
  description?: string;
  project?: string;
}

export interface IProjectSummary {
  name: string;
  jobs: number;
  experiments: number;
  datasets: number;
}

/** A job on a project's page: and which jobs read its output. */
export interface IProjectJob extends IJob {
  used_by: string[];
}

export interface IProjectPage {
  name: string;
  jobs: IProjectJob[];
  experiments: IExperiment[];
  datasets: IDataset[];
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
  project?: string;
}

export type ExperimentStatus = 'running' | 'completed' | 'failed' | 'cancelled';

/** A searched parameter: a list of values, or a range. */
export type SearchSpec = any[] | ISearchRange;

export interface ISearchRange {
  min: number;
  max: number;
  log?: boolean;
  step?: number;
  count?: number;
}

/** `POST experiments` (docs/experiments.md) */
export interface IExperimentRequest {
  template: string;
  name: string;
  params: { [key: string]: any };
  search: { [key: string]: SearchSpec };
  searcher: 'grid' | 'random' | 'tpe';
  early_stopping: 'none' | 'asha' | 'hyperband';
  divisor?: number;
  max_rungs?: number;
  metric?: string;
  maximize?: boolean;
  max_trials?: number;
  max_concurrent_trials?: number;
  profile: string;
  hours: number;
  project?: string;
}

export interface ITrial {
  trial: number;
  job_id: string;
  name: string;
  status: JobStatus;
  reason: string;
  params: { [key: string]: any };
  value: number | null;
  epoch: number | null;
  epochs: number | null;
  restarts: number;
  /** [epoch, metric] per epoch */
  curve: [number, number][];
}

export interface IExperimentCounts {
  trials: number;
  queued: number;
  running: number;
  completed: number;
  pruned: number;
  failed: number;
  cancelled: number;
}

export interface IBestTrial {
  trial: number;
  job_id: string;
  params: { [key: string]: any };
  value: number;
  epoch: number | null;
  model_path: string | null;
}

export interface IExperiment {
  id: string;
  name: string;
  template: string;
  params: { [key: string]: any };
  search: { [key: string]: SearchSpec };
  searcher: string;
  early_stopping: string;
  divisor: number;
  max_rungs: number;
  metric: string;
  maximize: boolean;
  max_trials: number;
  max_concurrent_trials: number;
  max_restarts: number;
  profile: string;
  hours: number;
  epochs: number | null;
  status: ExperimentStatus;
  reason: string;
  notes: string[];
  created: string;
  ended: string | null;
  counts: IExperimentCounts;
  best: IBestTrial | null;
  controller?: { status: string; job_id: string; restarts: number; heartbeat: string | null } | null;
  /** `GET experiments/{id}` only */
  trials?: ITrial[];
  /** the project its trials belong to ("default" unless one was given) */
  project?: string;
  /** every trial's inputs as the request named them, pinned to their versions */
  inputs?: IInputEntry[];
  /** what every trial mounts, resolved (with digests): the inputs, and those the fixed parameters name */
  uses?: IInput[];
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

/** What went wrong, in the server's words (an APIError's message), for a panel to show. */
export function errorText(error: unknown): string {
  return (error as APIError).message ?? String(error);
}

async function request(path: string, init: RequestInit): Promise<Response> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'clusterlab', 'api', path);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new APIError(`the server cannot be reached: ${error}`, 0, null);
  }
  if (!response.ok) {
    const text = await response.text();
    let data: any = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    throw new APIError(data?.error ?? (text || response.statusText), response.status, data?.field ?? null);
  }
  return response;
}

/** The answer's bytes (a dataset's image), fetched with the server's auth like every call. */
export async function requestBlob(path: string): Promise<Blob> {
  return (await request(path, {})).blob();
}

/** "a/b c.png" -> "a/b%20c.png": each part of a path encoded, the slashes kept. */
export function encodePath(path: string): string {
  return path.split('/').map(encodeURIComponent).join('/');
}

/** The answer's text, or an APIError (the server's `error` and `field` when it gave them). */
export async function requestText(path: string, init: RequestInit = {}): Promise<string> {
  return (await request(path, init)).text();
}

export async function requestAPI<T>(path: string, init: RequestInit = {}): Promise<T> {
  const text = await requestText(path, init);
  try {
    return (text ? JSON.parse(text) : null) as T;
  } catch {
    return null as T; // not JSON: as before, the caller gets nothing
  }
}

export function postJSON<T>(path: string, body: unknown): Promise<T> {
  return requestAPI<T>(path, { method: 'POST', body: JSON.stringify(body) });
}

// ----- the AI Studio (`studio/...`): labelling, export, train, validate, register, publish -----

export type LabellingKind = 'classification' | 'detection';

/** A labelling of images in Label Studio: what the chain of a project starts from. */
export interface ILabelling {
  id: string;
  name: string;
  project: string | null;
  kind: LabellingKind;
  classes: string[];
  /** the folder or dataset version ("name:version") its images came from */
  source: string;
  images: number;
  /** how many have labels (null: not known until Label Studio has been asked) */
  labelled: number | null;
  created: string;
  /** the dataset versions its labels were exported to */
  exports: { dataset: string; version: number }[];
  /** once opened: Label Studio's page, a browser path through the user's server */
  url: string | null;
}

/** `POST studio/labellings` */
export interface ILabellingRequest {
  name: string;
  kind: LabellingKind;
  classes: string[];
  /** a folder in the workspace, or a dataset version "name:version" */
  images: string;
  project?: string;
}

/** `POST studio/labellings/{id}/export` */
export interface IExportRequest {
  dataset: string;
  val_fraction: number;
  seed: number;
}

export interface IDatasetRef {
  name: string;
  version: number;
}

export interface IValidationReport {
  kind: LabellingKind;
  accuracy?: number;
  map50?: number;
  /** per class: its figures (precision, recall, AP, …) */
  classes: { [name: string]: any };
  /** report.md: relative to the server's root when inside it */
  path: string;
}

/** A trial's model run over a dataset version by an inference job, and what it scored. */
export interface IValidation {
  id: string;
  job: string;
  inference_job: string | null;
  dataset: IDatasetRef;
  status: 'running' | 'done' | 'failed';
  error: string | null;
  report: IValidationReport | null;
}

/** A version of a named model in the registry (1, 2, …), and where it was published. */
export interface IModelVersion {
  model: string;
  version: number;
  job: string;
  template: string;
  parameters: { [key: string]: any };
  dataset: IDatasetRef;
  validation: string | null;
  metrics: { [name: string]: number };
  created: string;
  published: { repository: string; branch: string; commit: string; at: string } | null;
}

export interface IModel {
  name: string;
  versions: IModelVersion[];
}

export type StepName = 'label' | 'export' | 'train' | 'validate' | 'register' | 'publish';
export const STEP_NAMES: StepName[] = ['label', 'export', 'train', 'validate', 'register', 'publish'];
export type StepState = 'todo' | 'running' | 'done' | 'failed';

/** What a step's ref names: the labelling, a dataset version, an experiment, a validation, a model version. */
export interface IStepRef {
  labelling?: string;
  dataset?: string;
  experiment?: string;
  validation?: string;
  model?: string;
  version?: number;
}

export interface IStep {
  step: StepName;
  state: StepState;
  /** one line in words: "40 of 60 images labelled", "shapes:3", "experiment 3f… 4 trials, best accuracy 0.93" */
  detail: string;
  ref: IStepRef | null;
}

/** A labelling and how far its chain has come, step by step. */
export interface IChain {
  labelling: ILabelling;
  steps: IStep[];
}

function studioPath(...parts: (string | number)[]): string {
  return ['studio', ...parts.map(part => encodeURIComponent(String(part)))].join('/');
}

export const studioAPI = {
  createLabelling: (request: ILabellingRequest) => postJSON<ILabelling>('studio/labellings', request),
  labelling: (id: string) => requestAPI<ILabelling>(studioPath('labellings', id)),
  deleteLabelling: (id: string) => requestAPI<void>(studioPath('labellings', id), { method: 'DELETE' }),
  /** starts the user's Label Studio when it is not running: 10–60 s the first time */
  openLabelling: (id: string) => postJSON<ILabelling>(`${studioPath('labellings', id)}/open`, {}),
  exportLabels: (id: string, request: IExportRequest) =>
    postJSON<IDatasetVersion>(`${studioPath('labellings', id)}/export`, request),
  /** a grid search of the training template that fits the dataset's kind */
  train: (request: { dataset: string; name?: string; project?: string }) =>
    postJSON<IExperiment>('studio/experiments', request),
  validate: (request: { job: string; dataset: string }) => postJSON<IValidation>('studio/validations', request),
  validation: (id: string) => requestAPI<IValidation>(studioPath('validations', id)),
  models: () => requestAPI<{ models: IModel[] }>('studio/models'),
  register: (request: { name: string; job: string; validation?: string }) =>
    postJSON<IModelVersion>('studio/models', request),
  publish: (model: string, version: number, request: { repository: string; branch?: string }) =>
    postJSON<IModelVersion>(`${studioPath('models', model, version)}/publish`, request)
};
