/**
 * What the AI Studio page shows: the chains of the user's labellings (`GET
 * studio/chains`, for one project or all), and the validations their
 * "validate" steps name (for the report's path and figures). Polled at the
 * panels' interval while a step runs, and at a slower pace otherwise (a chain
 * also moves when a job ends or a labeller saves in Label Studio). The
 * actions are here too, each followed by a look at once.
 */
import {
  errorText,
  IChain,
  IDatasetVersion,
  IExperiment,
  IExportRequest,
  ILabelling,
  ILabellingRequest,
  IModelVersion,
  IStep,
  IValidation,
  StepName,
  studioAPI
} from './api';
import { PolledList } from './serverList';

/** How much slower the page looks when no step is running. */
const IDLE_FACTOR = 6;

export function stepOf(chain: IChain, name: StepName): IStep | undefined {
  return chain.steps.find(step => step.step === name);
}

/** The first step that is not done (the one the card offers to start), or null when all are. */
export function nextStep(chain: IChain): IStep | null {
  return chain.steps.find(step => step.state !== 'done') ?? null;
}

export function isRunning(chain: IChain): boolean {
  return chain.steps.some(step => step.state === 'running');
}

/** "shapes:3": the dataset version the chain's export made (its latest), if any. */
export function exportedRef(chain: IChain): string | null {
  const ref = stepOf(chain, 'export')?.ref;
  if (ref?.dataset && ref.version !== undefined) {
    return `${ref.dataset}:${ref.version}`;
  }
  const last = chain.labelling.exports[chain.labelling.exports.length - 1];
  return last ? `${last.dataset}:${last.version}` : null;
}

export class StudioModel extends PolledList<IChain> {
  private _interval: number;
  private _validations = new Map<string, IValidation>();
  /** labelling id -> what is under way from this page ("Starting Label Studio…") */
  private _busy = new Map<string, string>();

  constructor(intervalSeconds = 5) {
    super('studio/chains', 'chains', intervalSeconds);
    this._interval = intervalSeconds;
  }

  get chains(): IChain[] {
    return this.items;
  }

  /** The panels' interval; the page looks this often while a step runs. */
  set interval(seconds: number) {
    this._interval = seconds;
    super.interval = this._running() ? seconds : seconds * IDLE_FACTOR;
  }

  byId(id: string): IChain | undefined {
    return this.items.find(chain => chain.labelling.id === id);
  }

  validation(id: string | undefined): IValidation | undefined {
    return id ? this._validations.get(id) : undefined;
  }

  busy(id: string): string {
    return this._busy.get(id) ?? '';
  }

  async createLabelling(request: ILabellingRequest): Promise<ILabelling> {
    const labelling = await studioAPI.createLabelling(request);
    await this.reload();
    return labelling;
  }

  /** Label Studio's page for it (started when it is not running: the card says so meanwhile). */
  openLabelling(id: string): Promise<ILabelling> {
    const what = 'Starting Label Studio (up to a minute the first time)…';
    return this._while(id, what, () => studioAPI.openLabelling(id));
  }

  exportLabels(id: string, request: IExportRequest): Promise<IDatasetVersion> {
    return this._while(id, 'Exporting the labels…', () => studioAPI.exportLabels(id, request));
  }

  train(id: string, dataset: string, project: string | null): Promise<IExperiment> {
    return this._while(id, 'Starting the grid search…', () =>
      studioAPI.train({ dataset, ...(project ? { project } : {}) })
    );
  }

  validate(id: string, job: string, dataset: string): Promise<IValidation> {
    return this._while(id, 'Starting the validation…', () => studioAPI.validate({ job, dataset }));
  }

  register(id: string, name: string, job: string, validation: string | null): Promise<IModelVersion> {
    return this._while(id, 'Registering the model…', () =>
      studioAPI.register({ name, job, ...(validation ? { validation } : {}) })
    );
  }

  publish(id: string, model: string, version: number, repository: string, branch: string): Promise<IModelVersion> {
    return this._while(id, 'Publishing…', () =>
      studioAPI.publish(model, version, { repository, ...(branch ? { branch } : {}) })
    );
  }

  async remove(id: string): Promise<void> {
    await studioAPI.deleteLabelling(id);
    this._items = this._items.filter(chain => chain.labelling.id !== id);
    this._changed.emit();
    await this.reload();
  }

  /** The validations the chains name, again while they run (a done one is fetched once). */
  protected async afterRefresh(): Promise<void> {
    const ids = this.items.map(chain => stepOf(chain, 'validate')?.ref?.validation).filter((id): id is string => !!id);
    await Promise.all(
      ids.map(async id => {
        const known = this._validations.get(id);
        if (known && known.status !== 'running') {
          return;
        }
        try {
          this._validations.set(id, await studioAPI.validation(id));
        } catch (error) {
          console.warn(`ClusterLab: validation ${id}: ${errorText(error)}`);
        }
      })
    );
    super.interval = this._running() ? this._interval : this._interval * IDLE_FACTOR;
  }

  private _running(): boolean {
    return this._busy.size > 0 || this.items.some(isRunning);
  }

  /** Run ``action`` with the card saying ``what`` meanwhile; the chains are asked again after. */
  private async _while<T>(id: string, what: string, action: () => Promise<T>): Promise<T> {
    this._busy.set(id, what);
    this._changed.emit();
    try {
      return await action();
    } finally {
      this._busy.delete(id);
      this._changed.emit();
      void this.reload();
    }
  }
}
