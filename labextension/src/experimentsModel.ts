/**
 * The user's experiments, polled from the server like the jobs (at the same
 * interval), and the full record (with its trials) of each experiment that a
 * view is showing: fetched again only while it runs or when its summary moved,
 * so an ended experiment costs one list entry per round.
 */
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { APIError, IExperiment, IJob, requestAPI } from './api';

export class ExperimentsModel {
  private _experiments: IExperiment[] = [];
  private _error = '';
  private _loaded = false;
  private _changed = new Signal<this, void>(this);
  private _poll: Poll;
  /** id -> the full record, for the ids a view watches (undefined until the first answer) */
  private _details = new Map<string, IExperiment | undefined>();
  private _detailErrors = new Map<string, string>();
  /** id -> the summary the detail was fetched at, to see when it moved */
  private _fetchedAt = new Map<string, string>();
  private _project: string | null = null;
  /** id -> name of every experiment seen, so a trial's card is named also while a filter hides it */
  private _names = new Map<string, string>();

  constructor(intervalSeconds = 5) {
    this._poll = new Poll({
      factory: () => this._refresh(),
      frequency: { interval: intervalSeconds * 1000, backoff: true, max: 60 * 1000 },
      standby: 'when-hidden',
      name: 'clusterlab:experiments'
    });
  }

  get experiments(): IExperiment[] {
    return this._experiments;
  }

  /** Whether the list has been answered once (before: "loading", not "none yet"). */
  get loaded(): boolean {
    return this._loaded;
  }

  get error(): string {
    return this._error;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  set interval(seconds: number) {
    this._poll.frequency = { ...this._poll.frequency, interval: Math.max(1, seconds) * 1000 };
  }

  /** Only this project's experiments (null: all of them). */
  get project(): string | null {
    return this._project;
  }

  set project(project: string | null) {
    if (project !== this._project) {
      this._project = project;
      this._loaded = false;
      this._changed.emit();
      void this.refresh();
    }
  }

  byId(id: string): IExperiment | undefined {
    return this._details.get(id) ?? this._experiments.find(e => e.id === id);
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

  refresh(): Promise<void> {
    return this._poll.refresh();
  }

  dispose(): void {
    this._poll.dispose();
  }

  async cancel(id: string): Promise<void> {
    await requestAPI<IExperiment>(`experiments/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
    this._fetchedAt.delete(id);
    await this.refresh();
  }

  async remove(id: string): Promise<void> {
    await requestAPI<void>(`experiments/${encodeURIComponent(id)}`, { method: 'DELETE' });
    this._experiments = this._experiments.filter(e => e.id !== id);
    this.unwatch(id);
    this._changed.emit();
    await this.refresh();
  }

  private async _refresh(): Promise<void> {
    try {
      const query = this._project ? `?project=${encodeURIComponent(this._project)}` : '';
      const answer = await requestAPI<{ experiments: IExperiment[] }>(`experiments${query}`);
      this._experiments = answer.experiments;
      this._experiments.forEach(e => this._names.set(e.id, e.name));
      this._loaded = true;
      this._error = '';
    } catch (error) {
      this._error = (error as APIError).message ?? String(error);
      this._changed.emit();
      throw error; // the Poll backs off
    }
    await Promise.all([...this._details.keys()].map(id => this._refreshDetail(id)));
    this._changed.emit();
  }

  private async _refreshDetail(id: string): Promise<void> {
    const summary = this._experiments.find(e => e.id === id);
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
      this._detailErrors.set(id, (error as APIError).message ?? String(error));
    }
  }
}

export function isEnded(experiment: IExperiment): boolean {
  return experiment.status !== 'running';
}
