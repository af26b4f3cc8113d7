/**
 * The user's datasets and the site's (`GET datasets`, filtered by project),
 * polled like the jobs, and what the Datasets panel shows of the version the
 * user selected: its record with the jobs that used it, and its preview (the
 * images fetched once, as object URLs, with the server's auth).
 */
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import {
  APIError,
  encodePath,
  IDataset,
  IDatasetPreview,
  IDatasetRequest,
  IDatasetVersion,
  postJSON,
  requestAPI,
  requestBlob
} from './api';

export interface ISelection {
  name: string;
  version: number;
}

/** What the panel shows of the selected version; each part undefined until answered. */
export interface IVersionDetail {
  version?: IDatasetVersion;
  preview?: IDatasetPreview;
  /** path -> object URL */
  images: Map<string, string>;
  error: string;
  /** why the last delete was refused, in the server's words */
  deleteError: string;
}

export function versionPath(name: string, version: number): string {
  return `datasets/${encodeURIComponent(name)}/${version}`;
}

export class DatasetsModel {
  private _datasets: IDataset[] = [];
  private _error = '';
  private _loaded = false;
  private _project: string | null = null;
  private _selected: ISelection | null = null;
  private _detail: IVersionDetail | null = null;
  private _changed = new Signal<this, void>(this);
  private _poll: Poll;

  constructor(intervalSeconds = 5) {
    this._poll = new Poll({
      factory: () => this._refresh(),
      frequency: { interval: intervalSeconds * 1000, backoff: true, max: 60 * 1000 },
      standby: 'when-hidden',
      name: 'clusterlab:datasets'
    });
  }

  get datasets(): IDataset[] {
    return this._datasets;
  }

  get loaded(): boolean {
    return this._loaded;
  }

  get error(): string {
    return this._error;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Only this project's datasets (null: all). */
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

  get selected(): ISelection | null {
    return this._selected;
  }

  get detail(): IVersionDetail | null {
    return this._detail;
  }

  byName(name: string): IDataset | undefined {
    return this._datasets.find(d => d.name === name);
  }

  /** Show ``version`` of ``name`` (null: its latest); the same again closes it. */
  select(name: string, version: number | null, toggle = false): void {
    const dataset = this.byName(name);
    const number = version ?? dataset?.latest ?? dataset?.versions[0]?.version ?? null;
    if (number === null) {
      return;
    }
    if (toggle && this._selected?.name === name && this._selected.version === number) {
      this._unselect();
      this._changed.emit();
      return;
    }
    if (this._selected?.name !== name || this._selected.version !== number) {
      this._unselect();
      this._selected = { name, version: number };
      this._detail = { images: new Map(), error: '', deleteError: '' };
      this._changed.emit();
      void this._loadDetail(true);
    }
  }

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
    this._unselect();
    this._poll.dispose();
  }

  async create(request: IDatasetRequest): Promise<IDatasetVersion> {
    const version = await postJSON<IDatasetVersion>('datasets', request);
    void this.refresh();
    return version;
  }

  /** Delete a version; a refusal (a job still reads it: 409) stays on the detail, in words. */
  async remove(name: string, version: number): Promise<boolean> {
    try {
      await requestAPI<void>(versionPath(name, version), { method: 'DELETE' });
    } catch (error) {
      if (this._detail && this._selected?.name === name && this._selected.version === version) {
        this._detail.deleteError = (error as APIError).message ?? String(error);
        this._changed.emit();
      }
      return false;
    }
    if (this._selected?.name === name && this._selected.version === version) {
      this._unselect();
    }
    await this.refresh();
    return true;
  }

  private _unselect(): void {
    this._detail?.images.forEach(url => URL.revokeObjectURL(url));
    this._selected = null;
    this._detail = null;
  }

  private async _refresh(): Promise<void> {
    try {
      const query = this._project ? `?project=${encodeURIComponent(this._project)}` : '';
      const answer = await requestAPI<{ datasets: IDataset[] }>(`datasets${query}`);
      this._datasets = answer.datasets;
      this._loaded = true;
      this._error = '';
    } catch (error) {
      this._error = (error as APIError).message ?? String(error);
      this._changed.emit();
      throw error; // the Poll backs off
    }
    if (this._selected) {
      const { name, version } = this._selected;
      if (!this.byName(name)?.versions.some(v => v.version === version)) {
        this._unselect(); // deleted elsewhere (the CLI), or not in the project shown
      } else {
        await this._loadDetail(false);
      }
    }
    this._changed.emit();
  }

  /** The version's record (again each round: who used it moves) and, the first time, its preview. */
  private async _loadDetail(first: boolean): Promise<void> {
    const selected = this._selected;
    const detail = this._detail;
    if (!selected || !detail) {
      return;
    }
    const path = versionPath(selected.name, selected.version);
    const current = () => this._selected === selected;
    try {
      const version = await requestAPI<IDatasetVersion>(path);
      if (!current()) {
        return;
      }
      detail.version = version;
      detail.error = '';
      if (first) {
        this._changed.emit();
        detail.preview = await requestAPI<IDatasetPreview>(`${path}/preview`);
        if (!current()) {
          return;
        }
        this._changed.emit();
        await Promise.all(
          detail.preview.images.map(async image => {
            try {
              const blob = await requestBlob(`${path}/files/${encodePath(image.path)}`);
              if (current()) {
                detail.images.set(image.path, URL.createObjectURL(blob));
              }
            } catch {
              // the card says the image could not be shown
            }
          })
        );
      }
    } catch (error) {
      if (current()) {
        detail.error = (error as APIError).message ?? String(error);
      }
    }
    if (current()) {
      this._changed.emit();
    }
  }
}
