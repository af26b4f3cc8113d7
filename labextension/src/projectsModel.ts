/**
 * The user's projects (`GET projects`: names and counts), for the project
 * filters of the panels and the forms' project field. Asked again now and then
 * and whenever a filter is opened; a server without projects leaves the list
 * empty and the filters hidden.
 */
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { IProjectSummary, requestAPI } from './api';

export const DEFAULT_PROJECT = 'default';

export class ProjectsModel {
  private _projects: IProjectSummary[] = [];
  private _available = false;
  private _changed = new Signal<this, void>(this);
  private _poll: Poll;

  constructor(intervalSeconds = 30) {
    this._poll = new Poll({
      factory: () => this._refresh(),
      frequency: { interval: intervalSeconds * 1000, backoff: true, max: 5 * 60 * 1000 },
      standby: 'when-hidden',
      name: 'clusterlab:projects'
    });
  }

  get projects(): IProjectSummary[] {
    return this._projects;
  }

  get names(): string[] {
    return this._projects.map(p => p.name);
  }

  /** Whether the server answers `GET projects` (it did once). */
  get available(): boolean {
    return this._available;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  refresh(): Promise<void> {
    return this._poll.refresh();
  }

  dispose(): void {
    this._poll.dispose();
  }

  private async _refresh(): Promise<void> {
    const answer = await requestAPI<{ projects: IProjectSummary[] }>('projects');
    const projects = answer?.projects ?? [];
    if (!projects.some(p => p.name === DEFAULT_PROJECT)) {
      projects.unshift({ name: DEFAULT_PROJECT, jobs: 0, experiments: 0, datasets: 0 });
    }
    const changed = !this._available || JSON.stringify(projects) !== JSON.stringify(this._projects);
    this._projects = projects;
    this._available = true;
    if (changed) {
      this._changed.emit();
    }
  }
}
