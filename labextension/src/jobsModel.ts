/**
 * The user's jobs, polled from the server at the interval set in the settings
 * registry, and the metrics of each job (fetched again only when its epoch moves).
 */
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { APIError, FINAL_STATUSES, IJob, IMetricPoint, IProfile, ITemplate, requestAPI } from './api';

/**
 * What a card shows of its job's size and template. The templates are the
 * plugin's (it reads them for the launcher); the sizes are read once here.
 */
export interface ICatalog {
  profiles: Map<string, IProfile>;
  templates: Map<string, ITemplate>;
}

export class JobsModel {
  private _jobs: IJob[] = [];
  private _error = '';
  private _changed = new Signal<this, void>(this);
  private _metrics = new Map<string, { epoch: number; points: IMetricPoint[] }>();
  private _poll: Poll;
  private _catalog: ICatalog;
  private _profilesLoaded = false;
  private _project: string | null = null;

  constructor(templates: Map<string, ITemplate>, intervalSeconds = 5) {
    this._catalog = { profiles: new Map(), templates };
    this._poll = new Poll({
      factory: () => this._refresh(),
      frequency: { interval: intervalSeconds * 1000, backoff: true, max: 60 * 1000 },
      standby: 'when-hidden',
      name: 'clusterlab:jobs'
    });
  }

  get jobs(): IJob[] {
    return this._jobs;
  }

  /** Why the last refresh failed ('' when it did not). */
  get error(): string {
    return this._error;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get catalog(): ICatalog {
    return this._catalog;
  }

  /** Only this project's jobs (null: all of them). */
  get project(): string | null {
    return this._project;
  }

  set project(project: string | null) {
    if (project !== this._project) {
      this._project = project;
      this._changed.emit();
      void this.refresh();
    }
  }

  metrics(jobId: string): IMetricPoint[] {
    return this._metrics.get(jobId)?.points ?? [];
  }

  set interval(seconds: number) {
    this._poll.frequency = { ...this._poll.frequency, interval: Math.max(1, seconds) * 1000 };
  }

  /** Refresh now (after a submit, cancel or rerun), not at the next tick. */
  refresh(): Promise<void> {
    return this._poll.refresh();
  }

  /** Ask now and wait for the answer (`refresh` only schedules it): a link must find what it names. */
  async reload(): Promise<void> {
    try {
      await this._refresh();
    } catch {
      // the error shows in the panel; the poll tries again
    }
  }

  dispose(): void {
    this._poll.dispose();
  }

  async cancel(jobId: string): Promise<void> {
    await requestAPI<IJob>(`jobs/${encodeURIComponent(jobId)}`, { method: 'DELETE' });
    await this.refresh();
  }

  private async _refresh(): Promise<void> {
    try {
      const query = this._project ? `?project=${encodeURIComponent(this._project)}` : '';
      const answer = await requestAPI<{ jobs: IJob[] }>(`jobs${query}`);
      this._jobs = answer.jobs;
      if (!this._profilesLoaded) {
        await this._loadProfiles();
      }
      this._error = '';
      await Promise.all(this._jobs.map(job => this._refreshMetrics(job)));
    } catch (error) {
      this._error = (error as APIError).message ?? String(error);
      this._changed.emit();
      throw error; // the Poll backs off
    }
    this._changed.emit();
  }

  private async _loadProfiles(): Promise<void> {
    try {
      const answer = await requestAPI<{ profiles: IProfile[] }>('profiles');
      this._catalog.profiles = new Map(answer.profiles.map(p => [p.id, p]));
      this._profilesLoaded = true;
    } catch {
      // cards show the ids meanwhile; the next round tries again
    }
  }

  private async _refreshMetrics(job: IJob): Promise<void> {
    const epoch = job.progress?.epoch ?? -1;
    const known = this._metrics.get(job.id);
    if (epoch < 0 || (known && known.epoch === epoch)) {
      return;
    }
    try {
      const answer = await requestAPI<{ points: IMetricPoint[] }>(`jobs/${encodeURIComponent(job.id)}/metrics`);
      this._metrics.set(job.id, { epoch, points: answer.points });
    } catch {
      // the chart waits for the next round
    }
  }
}

export function isFinal(job: IJob): boolean {
  return FINAL_STATUSES.includes(job.status);
}

/** "1h 02m", "3m 05s", "12s": from start (or submit) to end (or now). */
export function elapsed(job: IJob, now = Date.now()): string {
  const start = job.start_time ?? job.submit_time;
  if (!start) {
    return '';
  }
  const end = job.end_time ? Date.parse(job.end_time) : now;
  const seconds = Math.max(0, Math.round((end - Date.parse(start)) / 1000));
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  const pad = (n: number) => String(n).padStart(2, '0');
  if (h > 0) {
    return `${h}h ${pad(m)}m`;
  }
  if (m > 0) {
    return `${m}m ${pad(s)}s`;
  }
  return `${s}s`;
}
