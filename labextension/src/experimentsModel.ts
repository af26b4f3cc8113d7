/**
 * The user's experiments, polled from the server like the jobs (at the same
 * interval), and the full record (with its trials) of each experiment that a
 * view is showing: fetched again only while it runs or when its summary moved,
 * so an ended experiment costs one list entry per round.
 */
import { errorText, IExperiment, IJob, requestAPI } from './api';
import { PolledList } from './serverList';

export class ExperimentsModel extends PolledList<IExperiment> {
  /** id -> the full record, for the ids a view watches (undefined until the first answer) */
  private _details = new Map<string, IExperiment | undefined>();
  private _detailErrors = new Map<string, string>();
  /** id -> the summary the detail was fetched at, to see when it moved */
  private _fetchedAt = new Map<string, string>();
  /** id -> name of every experiment seen, so a trial's card is named also while a filter hides it */
  private _names = new Map<string, string>();

  constructor(intervalSeconds = 5) {
    super('experiments', 'experiments', intervalSeconds);
  }

  get experiments(): IExperiment[] {
    return this.items;
  }

  byId(id: string): IExperiment | undefined {
    return this._details.get(id) ?? this.items.find(e => e.id === id);
  }

  /** The full record (with `trials`), once a view has asked for it with `watch`. */
  detail(id: string): IExperiment | undefined {
    return this._details.get(id);
  }

  detailError(id: string): string {
    return this._detailErrors.get(id) ?? '';
  }

  /** The name of a trial job's experiment, for its card in the Jobs panel. */
  nameOf(job: IJob): string | undefined {
    return job.experiment_id ? this.byId(job.experiment_id)?.name ?? this._names.get(job.experiment_id) : undefined;
  }

  /** Keep the full record of ``id`` fresh (a view shows it) until `unwatch`. */
  watch(id: string): void {
    if (!this._details.has(id)) {
      this._details.set(id, undefined);
      void this.refresh();
    }
  }

  unwatch(id: string): void {
    this._details.delete(id);
    this._fetchedAt.delete(id);
    this._detailErrors.delete(id);
  }

  async cancel(id: string): Promise<void> {
    await requestAPI<IExperiment>(`experiments/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
    this._fetchedAt.delete(id);
    await this.refresh();
  }

  async remove(id: string): Promise<void> {
    await requestAPI<void>(`experiments/${encodeURIComponent(id)}`, { method: 'DELETE' });
    this._items = this._items.filter(e => e.id !== id);
    this.unwatch(id);
    this._changed.emit();
    await this.refresh();
  }

  protected async afterRefresh(): Promise<void> {
    this.items.forEach(e => this._names.set(e.id, e.name));
    await Promise.all([...this._details.keys()].map(id => this._refreshDetail(id)));
  }

  private async _refreshDetail(id: string): Promise<void> {
    const summary = this.items.find(e => e.id === id);
    // what moves while an experiment runs; an ended one is fetched once more, then left alone
    const stamp = summary ? JSON.stringify([summary.status, summary.counts, summary.best, summary.ended]) : '';
    const known = this._details.get(id);
    if (known && summary && summary.status !== 'running' && this._fetchedAt.get(id) === stamp) {
      return;
    }
    try {
      const detail = await requestAPI<IExperiment>(`experiments/${encodeURIComponent(id)}`);
      if (this._details.has(id)) {
        this._details.set(id, detail);
        this._fetchedAt.set(id, stamp);
        this._detailErrors.delete(id);
      }
    } catch (error) {
      this._detailErrors.set(id, errorText(error));
    }
  }
}

export function isEnded(experiment: IExperiment): boolean {
  return experiment.status !== 'running';
}
