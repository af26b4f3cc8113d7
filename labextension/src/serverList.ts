/**
 * A list the server answers (`GET jobs`, `GET datasets`, `GET experiments`)
 * and what a panel says of it: whether it has been answered yet ("loading…",
 * not "none yet"), and why the last ask failed, in the server's words.
 *
 * `PolledList` asks again at an interval, for one project or for all, and is
 * what the Jobs, Experiments and Datasets models build on: each adds only what
 * it fetches beside the list (metrics, an experiment's trials, a version's
 * preview) in `afterRefresh`. The pickers ask plain `ServerList`s when they open.
 */
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { errorText, requestAPI } from './api';

export class ServerList<T> {
  protected _items: T[] = [];
  protected _loaded = false;
  protected _error = '';
  protected readonly _changed = new Signal<this, void>(this);

  /**
   * @param path what to GET, as `requestAPI` takes it ("jobs?limit=200")
   * @param key the answer's field that holds the list ("jobs")
   */
  constructor(
    protected readonly path: string,
    protected readonly key: string
  ) {}

  get items(): T[] {
    return this._items;
  }

  /** Whether the list has been answered (before: "loading", not "none yet"). */
  get loaded(): boolean {
    return this._loaded;
  }

  /** Why the last ask failed ('' when it did not). */
  get error(): string {
    return this._error;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /**
   * Ask once. The answer replaces the list; a failure keeps the list as it
   * was, says why in `error` (and `changed`), and throws.
   */
  async fetch(): Promise<void> {
    try {
      const answer = await requestAPI<{ [key: string]: T[] }>(this.url());
      this._items = answer[this.key];
      this._loaded = true;
      this._error = '';
    } catch (error) {
      this._error = errorText(error);
      this._changed.emit();
      throw error;
    }
  }

  protected url(): string {
    return this.path;
  }
}

export class PolledList<T> extends ServerList<T> {
  private _project: string | null = null;
  private _poll: Poll;

  /** ``path`` also names the poll ("clusterlab:jobs"); it backs off to a minute while the server fails. */
  constructor(path: string, key: string, intervalSeconds: number) {
    super(path, key);
    this._poll = new Poll({
      factory: () => this._refresh(),
      frequency: { interval: intervalSeconds * 1000, backoff: true, max: 60 * 1000 },
      standby: 'when-hidden',
      name: `clusterlab:${path}`
    });
  }

  /** Only this project's entries (null: all of them). */
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

  set interval(seconds: number) {
    this._poll.frequency = { ...this._poll.frequency, interval: Math.max(1, seconds) * 1000 };
  }

  /** Ask now (after a submit, cancel or delete), not at the next tick; this only schedules it. */
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

  protected url(): string {
    return this._project ? `${this.path}?project=${encodeURIComponent(this._project)}` : this.path;
  }

  /** What a model fetches beside the list, each round, once the list is answered (before `changed`). */
  protected async afterRefresh(): Promise<void> {
    // nothing beside the list
  }

  private async _refresh(): Promise<void> {
    await this.fetch(); // a failure throws: the Poll backs off
    await this.afterRefresh();
    this._changed.emit();
  }
}
