/**
 * The user's jobs, polled from the server at the interval set in the settings
 * registry (a `PolledList`), and the metrics of each job (fetched again only
 * when its epoch moves).
 */
import { FINAL_STATUSES, IJob, IMetricPoint, IProfile, ITemplate, requestAPI } from './api';
import { PolledList } from './serverList';

/**
 * What a card shows of its job's size and template. The templates are the
 * plugin's (it reads them for the launcher); the sizes are read once here.
 */
export interface ICatalog {
  profiles: Map<string, IProfile>;
  templates: Map<string, ITemplate>;
}

export class JobsModel extends PolledList<IJob> {
  private _metrics = new Map<string, { epoch: number; points: IMetricPoint[] }>();
  private _catalog: ICatalog;
  private _profilesLoaded = false;

  constructor(templates: Map<string, ITemplate>, intervalSeconds = 5) {
    super('jobs', 'jobs', intervalSeconds);
    this._catalog = { profiles: new Map(), templates };
  }

  get jobs(): IJob[] {
    return this.items;
  }

  get catalog(): ICatalog {
    return this._catalog;
  }

  metrics(jobId: string): IMetricPoint[] {
    return this._metrics.get(jobId)?.points ?? [];
  }

  async cancel(jobId: string): Promise<void> {
    await requestAPI<IJob>(`jobs/${encodeURIComponent(jobId)}`, { method: 'DELETE' });
    await this.refresh();
  }

  protected async afterRefresh(): Promise<void> {
    if (!this._profilesLoaded) {
      await this._loadProfiles();
    }
    await Promise.all(this.items.map(job => this._refreshMetrics(job)));
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
