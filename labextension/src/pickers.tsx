/**
 * Pickers for a template's `format: dataset` and `format: job-output`
 * parameters (docs/datasets.md), as rjsf widgets registered under those format
 * names: a choice of the datasets and their versions ("shapes:2", or "shapes"
 * for the latest, pinned at submit), or of the user's ended jobs, newest first
 * ("job:<id>"), above the text box the value is typed in, so a plain path
 * still works. The search form's "values" rows get an "add" choice of the same.
 */
import { WidgetProps } from '@rjsf/utils';
import { ISignal, Signal } from '@lumino/signaling';
import * as React from 'react';

import { FINAL_STATUSES, IDataset, IJob } from './api';
import { formatBytes, formatFiles, formatTime } from './format';
import { ServerList } from './serverList';

export const DATASET_FORMAT = 'dataset';
export const JOB_OUTPUT_FORMAT = 'job-output';
export const PICKER_FORMATS = [DATASET_FORMAT, JOB_OUTPUT_FORMAT];

/** What the pickers offer: every dataset and every ended job (not filtered by a panel's project). */
export class PickerSource {
  private _datasets = new ServerList<IDataset>('datasets', 'datasets');
  private _jobs = new ServerList<IJob>('jobs?limit=200', 'jobs');
  private _ended: IJob[] = [];
  private _loaded = false;
  private _asked = 0;
  private _pending: Promise<void> | null = null;
  private _changed = new Signal<this, void>(this);

  get datasets(): IDataset[] {
    return this._datasets.items;
  }

  /** Ended jobs, newest first. */
  get jobs(): IJob[] {
    return this._ended;
  }

  /** Whether both have been asked once (answered or not). */
  get loaded(): boolean {
    return this._loaded;
  }

  /** Why the last ask failed, per list: "datasets: …; jobs: …" ('' when neither did). */
  get error(): string {
    const errors: string[] = [];
    if (this._datasets.error) {
      errors.push(`datasets: ${this._datasets.error}`);
    }
    if (this._jobs.error) {
      errors.push(`jobs: ${this._jobs.error}`);
    }
    return errors.join('; ');
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Ask again, unless asked in the last few seconds (each picker asks when it opens and on focus). */
  refresh(force = false): Promise<void> {
    if (this._pending) {
      return this._pending;
    }
    if (!force && Date.now() - this._asked < 3000) {
      return Promise.resolve();
    }
    this._asked = Date.now();
    this._pending = this._refresh().finally(() => (this._pending = null));
    return this._pending;
  }

  private async _refresh(): Promise<void> {
    // a list that fails keeps what it had, and says why in its error
    await Promise.allSettled([this._datasets.fetch(), this._jobs.fetch()]);
    const started = (job: IJob) => Date.parse(job.submit_time ?? job.start_time ?? '') || 0;
    this._ended = this._jobs.items.filter(job => FINAL_STATUSES.includes(job.status)).sort((a, b) => started(b) - started(a));
    this._loaded = true;
    this._changed.emit();
  }
}

export interface IChoice {
  value: string;
  label: string;
}

export interface IChoiceGroup {
  label: string;
  choices: IChoice[];
}

/** "shapes" (latest) and "shapes:N" for each version, a group per dataset. */
export function datasetChoices(datasets: IDataset[]): IChoiceGroup[] {
  return datasets.map(dataset => ({
    label: `${dataset.name}${dataset.shared ? ' (shared)' : ''}`,
    choices: [
      { value: dataset.name, label: `${dataset.name}: latest (now v${dataset.latest})` },
      ...dataset.versions.map(v => ({
        value: `${dataset.name}:${v.version}`,
        label: `${dataset.name}:${v.version} · ${formatBytes(v.bytes)} · ${formatFiles(v.files)} · ${formatTime(v.created)}`
      }))
    ]
  }));
}

/** "job:<id>" for each ended job, newest first. */
export function jobChoices(jobs: IJob[]): IChoiceGroup[] {
  return [
    {
      label: 'Ended jobs, newest first',
      choices: jobs.map(job => ({
        value: `job:${job.id}`,
        label: `${job.name} · ${job.status} ${formatTime(job.end_time ?? job.submit_time)}`
      }))
    }
  ];
}

/** What a value means, in words, under the box. */
export function describeValue(format: string, value: string, source: PickerSource): string {
  if (!value) {
    return format === DATASET_FORMAT
      ? 'Choose a dataset version above, or type NAME:VERSION, NAME (its latest) or a folder in your workspace.'
      : 'Choose an ended job above (its output folder), or type job:ID or a path in your workspace.';
  }
  const job = /^job:(.+)$/.exec(value);
  if (job) {
    const found = source.jobs.find(j => j.id === job[1]);
    return found ? `The output of job ${found.name} (${found.status}), frozen when this job is submitted.` : `The output of job ${job[1]}.`;
  }
  const ref = /^([A-Za-z0-9_]{1,100})(?::(\d+))?$/.exec(value);
  const dataset = ref && source.datasets.find(d => d.name === ref[1]);
  if (ref && dataset) {
    if (ref[2] === undefined) {
      return `The latest version of ${dataset.name} (now v${dataset.latest}), pinned when the job is submitted.`;
    }
    const version = dataset.versions.find(v => v.version === Number(ref[2]));
    return version
      ? `Dataset ${dataset.name} version ${version.version}: ${formatFiles(version.files)}, ${formatBytes(version.bytes)}, made by ${version.creator} ${formatTime(version.created)}.`
      : `${dataset.name} has no version ${ref[2]}.`;
  }
  return 'A path in your workspace.';
}

function Choices(props: { groups: IChoiceGroup[] }): JSX.Element {
  return (
    <>
      {props.groups.map(group => (
        <optgroup key={group.label} label={group.label}>
          {group.choices.map(choice => (
            <option key={choice.value} value={choice.value}>
              {choice.label}
            </option>
          ))}
        </optgroup>
      ))}
    </>
  );
}

/** The source's choices for a format, kept fresh while the picker shows. */
export function useChoices(format: string, source: PickerSource | undefined): IChoiceGroup[] {
  const [, setTick] = React.useState(0);
  React.useEffect(() => {
    if (!source) {
      return;
    }
    const changed = () => setTick(t => t + 1);
    source.changed.connect(changed);
    void source.refresh();
    return () => {
      source.changed.disconnect(changed);
    };
  }, [source]);
  if (!source) {
    return [];
  }
  return format === DATASET_FORMAT ? datasetChoices(source.datasets) : jobChoices(source.jobs);
}

/** The source a widget's form carries (formContext.pickers). */
function sourceOf(props: WidgetProps): PickerSource | undefined {
  return (props.registry.formContext as { pickers?: PickerSource } | undefined)?.pickers;
}

function emptyChoices(format: string, source: PickerSource | undefined): string {
  if (!source?.loaded) {
    return 'loading…';
  }
  return format === DATASET_FORMAT ? 'no dataset yet: type a folder below' : 'no ended job yet: type a path below';
}

function Picker(props: WidgetProps & { format: string }): JSX.Element {
  const { id, value, disabled, readonly, format, onChange, onBlur, onFocus, options, rawErrors } = props;
  const source = sourceOf(props);
  const groups = useChoices(format, source);
  const text = typeof value === 'string' ? value : value === undefined || value === null ? '' : String(value);
  const known = groups.some(g => g.choices.some(c => c.value === text));
  const count = groups.reduce((n, g) => n + g.choices.length, 0);
  const title = props.label || props.schema.title || props.name;
  const set = (next: string) => onChange(next === '' ? options.emptyValue : next);
  const kind = format === DATASET_FORMAT ? 'dataset version' : 'ended job';
  const invalid = rawErrors?.length ? { 'aria-invalid': true } : {};
  return (
    <div className="jp-clusterlab-picker" data-picker={format} data-value={text}>
      <label htmlFor={`${id}-choice`} className="jp-clusterlab-visually-hidden">
        Choose a {kind} for {title}
      </label>
      <select
        id={`${id}-choice`}
        className="jp-clusterlab-picker-choice"
        value={known ? text : ''}
        disabled={disabled || readonly}
        onFocus={() => void source?.refresh()}
        onChange={e => e.target.value !== '' && set(e.target.value)}
      >
        <option value="">
          {count === 0 ? emptyChoices(format, source) : text && !known ? 'typed below' : `choose a ${kind}…`}
        </option>
        <Choices groups={groups} />
      </select>
      <label htmlFor={id} className="jp-clusterlab-visually-hidden">
        {title}
      </label>
      <input
        id={id}
        className="jp-clusterlab-picker-text"
        value={text}
        disabled={disabled || readonly}
        placeholder={format === DATASET_FORMAT ? 'shapes:2, shapes (latest) or a folder' : 'job:ID or a path'}
        aria-describedby={`${id}-meaning`}
        onChange={e => set(e.target.value)}
        onBlur={e => onBlur(id, e.target.value)}
        onFocus={e => onFocus(id, e.target.value)}
        {...invalid}
      />
      <div className="jp-clusterlab-help jp-clusterlab-picker-meaning" id={`${id}-meaning`}>
        {source ? describeValue(format, text, source) : ''}
      </div>
      {source?.error && <div className="jp-clusterlab-help">Cannot list them now: {source.error}</div>}
    </div>
  );
}

export function DatasetPicker(props: WidgetProps): JSX.Element {
  return <Picker {...props} format={DATASET_FORMAT} />;
}

export function JobOutputPicker(props: WidgetProps): JSX.Element {
  return <Picker {...props} format={JOB_OUTPUT_FORMAT} />;
}

/** rjsf picks a string's widget by its format name: these are found without a uiSchema. */
export const PICKER_WIDGETS = { [DATASET_FORMAT]: DatasetPicker, [JOB_OUTPUT_FORMAT]: JobOutputPicker };

/**
 * The search form's "values" row of a picker parameter: a choice that adds a
 * version (or a job) to the comma-separated values.
 */
export function AddChoice(props: {
  id: string;
  title: string;
  format: string;
  source: PickerSource | undefined;
  values: string;
  onValues: (values: string) => void;
}): JSX.Element {
  const { id, title, format, source, values, onValues } = props;
  const groups = useChoices(format, source);
  const kind = format === DATASET_FORMAT ? 'a dataset version' : 'an ended job';
  const taken = values.split(',').map(v => v.trim()).filter(v => v !== '');
  return (
    <span className="jp-clusterlab-search-part jp-clusterlab-picker-add">
      <label htmlFor={`${id}-add`}>add</label>
      <select
        id={`${id}-add`}
        value=""
        aria-label={`Add ${kind} to the values of ${title}`}
        onFocus={() => void source?.refresh()}
        onChange={e => e.target.value && onValues([...taken, e.target.value].join(', '))}
      >
        <option value="">{`${kind}…`}</option>
        <Choices
          groups={groups.map(g => ({ ...g, choices: g.choices.filter(c => !taken.includes(c.value)) }))}
        />
      </select>
    </span>
  );
}
