/**
 * The user's datasets and the site's (`GET datasets`, filtered by project),
 * polled like the jobs, and what the Datasets panel shows of the version the
 * user selected: its record with the jobs that used it, and its preview (the
 * images fetched once, as object URLs, with the server's auth).
 */
import {
  encodePath,
  errorText,
  IDataset,
  IDatasetPreview,
  IDatasetRequest,
  IDatasetVersion,
  postJSON,
  requestAPI,
  requestBlob
} from './api';
import { PolledList } from './serverList';

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

export class DatasetsModel extends PolledList<IDataset> {
  private _selected: ISelection | null = null;
  private _detail: IVersionDetail | null = null;

  constructor(intervalSeconds = 5) {
    super('datasets', 'datasets', intervalSeconds);
  }

  get datasets(): IDataset[] {
    return this.items;
  }

  get selected(): ISelection | null {
    return this._selected;
  }

  get detail(): IVersionDetail | null {
    return this._detail;
  }

  byName(name: string): IDataset | undefined {
    return this.items.find(d => d.name === name);
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

  dispose(): void {
    this._unselect();
    super.dispose();
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
        this._detail.deleteError = errorText(error);
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

  /** The selected version again (who used it moves), unless it is gone from the list. */
  protected async afterRefresh(): Promise<void> {
    if (this._selected) {
      const { name, version } = this._selected;
      if (!this.byName(name)?.versions.some(v => v.version === version)) {
        this._unselect(); // deleted elsewhere (the CLI), or not in the project shown
      } else {
        await this._loadDetail(false);
      }
    }
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
        detail.error = errorText(error);
      }
    }
    if (current()) {
      this._changed.emit();
    }
  }
}
