/**
 * The template form's search mode (docs/experiments.md): each parameter row is
 * "fixed" (its normal widget), "values" (a comma-separated list, typed by the
 * parameter's schema) or, for numbers, "range" (min, max, log, step, count);
 * plus the searcher, early stopping, the metric and the budget. What the user
 * typed becomes the `POST experiments` body in `experimentRequest`, a pure
 * function that also says, per field, what is wrong before the server is asked.
 */
import { getSchemaType, getWidget, RJSFSchema, WidgetProps } from '@rjsf/utils';
import * as React from 'react';

import { IExperimentRequest, ITemplate, SearchSpec } from './api';
import { AddChoice, PICKER_FORMATS, PickerSource } from './pickers';

export type SearchMode = 'fixed' | 'values' | 'range';

/** One parameter's row as typed (strings, so a half-typed number stays as it is). */
export interface ISearchRow {
  mode: SearchMode;
  values: string;
  min: string;
  max: string;
  log: boolean;
  step: string;
  count: string;
}

export const FIXED: ISearchRow = { mode: 'fixed', values: '', min: '', max: '', log: false, step: '', count: '' };

/** A searched option of a `script` template's program: `options.<name>`. */
export interface IOptionRow extends ISearchRow {
  name: string;
}

export interface ISearchSettings {
  searcher: 'grid' | 'random' | 'tpe';
  early_stopping: 'none' | 'asha' | 'hyperband';
  divisor: string;
  max_rungs: string;
  metric: string;
  maximize: boolean;
  max_trials: string;
  max_concurrent_trials: string;
}

/** Field -> message: "search.learning_rate", "max_trials", ... (the server's names). */
export type SearchErrors = { [field: string]: string };

/** What the parameter widgets read from the form (rjsf passes it down as formContext). */
export interface ISearchContext {
  /** JupyterLab's field template reads it (the "modified" mark) */
  defaultFormData: { [key: string]: any };
  search: { [key: string]: ISearchRow } | null;
  errors: SearchErrors;
  /** a range's count is for the grid searcher only */
  searcher: ISearchSettings['searcher'];
  onRow: (key: string, row: ISearchRow) => void;
  /** the datasets and ended jobs a `format: dataset` / `job-output` parameter offers */
  pickers?: PickerSource;
}

/** The template's declared metrics, [name, spec] in their order. */
export function declaredMetrics(template: ITemplate): [string, { title?: string; goal?: string }][] {
  return Object.entries(template.metrics ?? {});
}

/** Larger is better, unless the template says otherwise or the name reads like an error. */
export function defaultMaximize(template: ITemplate, metric: string): boolean {
  const goal = template.metrics?.[metric]?.goal;
  if (goal) {
    return goal === 'maximize';
  }
  return !/loss|error|mse|mae|rmse|perplexity/i.test(metric);
}

export function defaultSettings(template: ITemplate): ISearchSettings {
  const metric = declaredMetrics(template)[0]?.[0] ?? '';
  return {
    searcher: 'tpe',
    early_stopping: 'none',
    divisor: '4',
    max_rungs: '5',
    metric,
    maximize: defaultMaximize(template, metric),
    max_trials: '',
    max_concurrent_trials: ''
  };
}

/** The type a parameter's values are typed by, or null for one that cannot be searched (lists, objects). */
export function searchType(schema: any): 'integer' | 'number' | 'string' | 'boolean' | null {
  if (!schema || schema.const !== undefined) {
    return null;
  }
  const type = getSchemaType(schema as RJSFSchema);
  return type === 'integer' || type === 'number' || type === 'string' || type === 'boolean' ? type : null;
}

function allowsNull(schema: any): boolean {
  return Array.isArray(schema?.type) ? schema.type.includes('null') : schema?.type === 'null';
}

/** Schema checks of one value: a message, or '' when it passes (the server checks again). */
export type ValueCheck = (schema: any, value: any) => string;

/** "a, b, c" -> typed values, or a message naming the value that is not one. */
export function parseValues(text: string, schema: any, check: ValueCheck): { values?: any[]; error?: string } {
  const type = searchType(schema);
  const tokens = text.split(',').map(t => t.trim());
  if (tokens.length === 1 && tokens[0] === '') {
    return { error: 'give one or more values, separated by commas' };
  }
  const values: any[] = [];
  for (const token of tokens) {
    let value: any;
    if (token === 'null' && allowsNull(schema)) {
      value = null;
    } else if (type === 'integer') {
      if (!/^[-+]?\d+$/.test(token)) {
        return { error: `"${token}" is not a whole number` };
      }
      value = Number(token);
    } else if (type === 'number') {
      value = token === '' ? NaN : Number(token);
      if (!Number.isFinite(value)) {
        return { error: `"${token}" is not a number` };
      }
    } else if (type === 'boolean') {
      if (!/^(true|false)$/i.test(token)) {
        return { error: `"${token}" is neither true nor false` };
      }
      value = token.toLowerCase() === 'true';
    } else if (schema === null) {
      // a script's own option: numbers where they read as numbers
      value = token !== '' && Number.isFinite(Number(token)) ? Number(token) : /^(true|false)$/i.test(token) ? token.toLowerCase() === 'true' : token;
    } else {
      value = token;
    }
    const problem = schema ? check(schema, value) : '';
    if (problem) {
      return { error: `${JSON.stringify(value)} ${problem}` };
    }
    values.push(value);
  }
  return { values };
}

/** A range row -> {min, max, log, step?, count?}, or a message. */
export function parseRange(
  row: ISearchRow,
  schema: any,
  check: ValueCheck,
  searcher: ISearchSettings['searcher']
): { range?: SearchSpec; error?: string } {
  // a script's option (no schema) is a number range; the server types it
  const integer = searchType(schema) === 'integer';
  const number = (text: string, what: string): number | string => {
    const value = text.trim() === '' ? NaN : Number(text);
    if (!Number.isFinite(value)) {
      return `${what}: give a number`;
    }
    if (integer && !Number.isInteger(value)) {
      return `${what}: give a whole number`;
    }
    return value;
  };
  const min = number(row.min, 'min');
  const max = number(row.max, 'max');
  for (const v of [min, max]) {
    if (typeof v === 'string') {
      return { error: v };
    }
  }
  const [low, high] = [min as number, max as number];
  for (const [what, v] of [['min', low], ['max', high]] as [string, number][]) {
    const problem = schema ? check(schema, v) : '';
    if (problem) {
      return { error: `${what} ${v} ${problem}` };
    }
  }
  if (low > high) {
    return { error: `min (${low}) is more than max (${high})` };
  }
  if (row.log && low <= 0) {
    return { error: 'a log range needs min > 0' };
  }
  const range: { [key: string]: any } = { min: low, max: high, log: row.log };
  if (row.step.trim() !== '' && !row.log) {
    const step = Number(row.step);
    if (!(Number.isFinite(step) && step > 0 && (!integer || Number.isInteger(step)))) {
      return { error: `step: give a ${integer ? 'whole number' : 'number'} > 0` };
    }
    range.step = step;
  }
  if (row.count.trim() !== '' && searcher === 'grid') {
    const count = Number(row.count);
    if (!(Number.isInteger(count) && count >= 1)) {
      return { error: 'count: give a whole number of points' };
    }
    range.count = count;
  }
  if (searcher === 'grid' && range.step === undefined && range.count === undefined) {
    return { error: 'a grid over a range needs a count (points) or a step' };
  }
  return { range: range as SearchSpec };
}

/** How many points a grid over ``search`` has, or null when a range gives no count or step. */
export function gridSize(search: { [key: string]: SearchSpec }): number | null {
  let size = 1;
  for (const spec of Object.values(search)) {
    if (Array.isArray(spec)) {
      size *= spec.length;
    } else if (spec.count) {
      size *= spec.count;
    } else if (spec.step) {
      size *= Math.floor((spec.max - spec.min) / spec.step + 1e-9) + 1;
    } else {
      return null;
    }
  }
  return size;
}

/** Whole numbers >= ``low``, or a message; '' is "the server's default" (undefined). */
function count(text: string, low: number): number | undefined | string {
  if (text.trim() === '') {
    return undefined;
  }
  const value = Number(text);
  return Number.isInteger(value) && value >= low ? value : `give a whole number, ${low} or more`;
}

/**
 * The request, or the fields that are wrong. ``params`` are the form's values
 * (the searched ones are left out of them); ``schema`` the template's.
 */
export function experimentRequest(options: {
  template: ITemplate;
  name: string;
  params: { [key: string]: any };
  rows: { [key: string]: ISearchRow };
  optionRows: IOptionRow[];
  settings: ISearchSettings;
  profile: string;
  hours: number;
  check: ValueCheck;
}): { request?: IExperimentRequest; errors: SearchErrors } {
  const { template, rows, optionRows, settings, check } = options;
  const properties = template.parameters.properties ?? {};
  const errors: SearchErrors = {};
  const search: { [key: string]: SearchSpec } = {};
  const add = (key: string, row: ISearchRow, schema: any) => {
    const parsed: { values?: any[]; range?: SearchSpec; error?: string } =
      row.mode === 'values' ? parseValues(row.values, schema, check) : parseRange(row, schema, check, settings.searcher);
    if (parsed.error) {
      errors[`search.${key}`] = parsed.error;
    } else {
      search[key] = (parsed.values ?? parsed.range) as SearchSpec;
    }
  };
  for (const [key, row] of Object.entries(rows)) {
    if (row.mode !== 'fixed' && key in properties) {
      add(key, row, properties[key]);
    }
  }
  optionRows.forEach((row, i) => {
    const name = row.name.trim();
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      errors[`options.${i}`] = 'an option name: letters, digits and _';
    } else {
      add(`options.${name}`, row, null);
    }
  });
  if (Object.keys(search).length === 0 && Object.keys(errors).length === 0) {
    errors.search = 'Choose at least one parameter to search: set its row to "values" or "range".';
  }
  const numbers: { [field: string]: number | undefined } = {};
  const counts: [keyof ISearchSettings, number][] = [['max_trials', 1], ['max_concurrent_trials', 1]];
  if (settings.early_stopping !== 'none') {
    counts.push(['divisor', 2], ['max_rungs', 1]);
  }
  for (const [field, low] of counts) {
    const value = count(settings[field] as string, low);
    if (typeof value === 'string') {
      errors[field] = value;
    } else {
      numbers[field] = value;
    }
  }
  if (!settings.metric.trim()) {
    errors.metric = 'name the metric to optimise';
  }
  if (Object.keys(errors).length > 0) {
    return { errors };
  }
  const fixed = Object.fromEntries(Object.entries(options.params).filter(([key]) => !(key in search)));
  const request: IExperimentRequest = {
    template: template.id,
    name: options.name,
    params: fixed,
    search,
    searcher: settings.searcher,
    early_stopping: settings.early_stopping,
    metric: settings.metric.trim(),
    maximize: settings.maximize,
    profile: options.profile,
    hours: options.hours
  };
  for (const [field, value] of Object.entries(numbers)) {
    if (value !== undefined) {
      (request as any)[field] = value;
    }
  }
  return { request, errors };
}

/** The widget rjsf would have drawn for this parameter (our labelled ones). */
function baseWidget(props: WidgetProps): React.ComponentType<WidgetProps> {
  const type = getSchemaType(props.schema);
  const format = props.schema.format;
  // a format with a widget of its name (a dataset's picker), as rjsf's own StringField chooses
  const byFormat = type === 'string' && format && format in props.registry.widgets ? format : null;
  const name = type === 'boolean' ? 'checkbox' : props.options?.enumOptions ? 'select' : byFormat ?? 'text';
  return getWidget(props.schema, name, props.registry.widgets) as React.ComponentType<WidgetProps>;
}

function Labelled(props: { id: string; label: string; children: React.ReactNode; className?: string; hidden?: boolean }): JSX.Element {
  return (
    <span className={`jp-clusterlab-search-part ${props.className ?? ''}`}>
      <label htmlFor={props.id} className={props.hidden ? 'jp-clusterlab-visually-hidden' : undefined}>
        {props.label}
      </label>
      {props.children}
    </span>
  );
}

/** The values or range inputs of one row; ``key`` names its ids ("learning_rate", "options.lr"). */
export function SearchInputs(props: {
  id: string;
  title: string;
  row: ISearchRow;
  schema: any;
  searcher: ISearchSettings['searcher'];
  error?: string;
  onRow: (row: ISearchRow) => void;
  pickers?: PickerSource;
}): JSX.Element | null {
  const { id, title, row, schema, searcher, error, onRow } = props;
  const picker = PICKER_FORMATS.includes(schema?.format) ? (schema.format as string) : null;
  const set = (change: Partial<ISearchRow>) => onRow({ ...row, ...change });
  const errorId = `${id}-error`;
  const invalid = error ? { 'aria-invalid': true, 'aria-describedby': errorId } : {};
  const type = searchType(schema);
  const allowed: any[] | undefined = schema?.enum;
  const example =
    allowed ? allowed.join(', ') : picker === 'dataset' ? 'e.g. shapes:1, shapes:2' : picker ? 'e.g. job:ID, job:ID' : type === 'integer' ? 'e.g. 16, 32, 64' : type === 'boolean' ? 'true, false' : type === 'number' ? 'e.g. 0.001, 0.003, 0.01' : 'e.g. a, b';
  return (
    <>
      {row.mode === 'values' && (
        <Labelled id={`${id}-values`} label={`Values of ${title}, separated by commas`} className="jp-clusterlab-search-values" hidden>
          <input
            id={`${id}-values`}
            className="jp-mod-styled"
            value={row.values}
            placeholder={example}
            onChange={e => set({ values: e.target.value })}
            {...invalid}
          />
        </Labelled>
      )}
      {row.mode === 'values' && picker && (
        <AddChoice
          id={id}
          title={title}
          format={picker}
          source={props.pickers}
          values={row.values}
          onValues={values => set({ values })}
        />
      )}
      {row.mode === 'range' && (
        <span className="jp-clusterlab-search-range">
          {(['min', 'max'] as const).map(part => (
            <Labelled key={part} id={`${id}-${part}`} label={part}>
              <input
                id={`${id}-${part}`}
                className="jp-mod-styled"
                inputMode="decimal"
                value={row[part]}
                onChange={e => set({ [part]: e.target.value })}
                {...invalid}
              />
            </Labelled>
          ))}
          <span className="jp-clusterlab-search-part jp-clusterlab-search-log" title="sample on a log scale (min > 0): for a learning rate">
            <input id={`${id}-log`} type="checkbox" checked={row.log} onChange={e => set({ log: e.target.checked })} />
            <label htmlFor={`${id}-log`}>log</label>
          </span>
          {!row.log && (
            <Labelled id={`${id}-step`} label="step">
              <input
                id={`${id}-step`}
                className="jp-mod-styled"
                inputMode="decimal"
                placeholder={searcher === 'grid' ? 'or count' : 'any'}
                title="values from min by this step"
                value={row.step}
                onChange={e => set({ step: e.target.value })}
              />
            </Labelled>
          )}
          {searcher === 'grid' && (
            <Labelled id={`${id}-count`} label="count">
              <input
                id={`${id}-count`}
                className="jp-mod-styled"
                inputMode="numeric"
                placeholder={row.log ? 'points' : 'or step'}
                title="points of the grid over the range (log-spaced when log)"
                value={row.count}
                onChange={e => set({ count: e.target.value })}
              />
            </Labelled>
          )}
        </span>
      )}
      {error && (
        <div className="jp-clusterlab-error" id={errorId}>
          {error}
        </div>
      )}
    </>
  );
}

function ModeSelect(props: { id: string; title: string; row: ISearchRow; modes: SearchMode[]; onRow: (row: ISearchRow) => void }): JSX.Element {
  const { id, title, row, modes, onRow } = props;
  return (
    <>
      <label htmlFor={`${id}-mode`} className="jp-clusterlab-visually-hidden">
        How {title} is chosen
      </label>
      <select
        id={`${id}-mode`}
        className="jp-mod-styled jp-clusterlab-search-mode"
        value={row.mode}
        onChange={e => onRow({ ...row, mode: e.target.value as SearchMode })}
      >
        {modes.map(mode => (
          <option key={mode} value={mode}>
            {mode}
          </option>
        ))}
      </select>
    </>
  );
}

/**
 * A parameter's widget in search mode: how it is chosen (fixed, values, range),
 * then the normal widget or what to search over. rjsf draws it, so the label,
 * help text and the parameter's own errors stay where they are.
 */
export function SearchableWidget(props: WidgetProps): JSX.Element {
  const context = props.registry.formContext as ISearchContext;
  const key = props.name || props.id.replace(/^root_/, '');
  const row = context.search?.[key] ?? FIXED;
  const type = searchType(props.schema);
  const modes: SearchMode[] = type === 'integer' || type === 'number' ? ['fixed', 'values', 'range'] : ['fixed', 'values'];
  const title = props.label || props.schema.title || key;
  const id = `clusterlab-search-${key}`;
  const onRow = (next: ISearchRow) => context.onRow(key, next);
  const Base = baseWidget(props);
  return (
    <div className="jp-clusterlab-search-row" data-search-param={key} data-mode={row.mode} data-field={`search.${key}`}>
      <ModeSelect id={id} title={title} row={row} modes={modes} onRow={onRow} />
      {row.mode === 'fixed' ? (
        <div className="jp-clusterlab-search-fixed">
          <Base {...props} />
        </div>
      ) : (
        <SearchInputs
          id={id}
          title={title}
          row={row}
          schema={props.schema}
          searcher={context.searcher}
          error={context.errors[`search.${key}`]}
          onRow={onRow}
          pickers={context.pickers}
        />
      )}
    </div>
  );
}

/** A `script` template's own options (`options.<name>`), added one by one. */
export function OptionRows(props: {
  rows: IOptionRow[];
  errors: SearchErrors;
  searcher: ISearchSettings['searcher'];
  onRows: (rows: IOptionRow[]) => void;
}): JSX.Element {
  const { rows, errors, searcher, onRows } = props;
  const set = (i: number, row: IOptionRow) => onRows(rows.map((r, j) => (j === i ? row : r)));
  return (
    <fieldset className="jp-clusterlab-field jp-clusterlab-search-options" data-field="search.options">
      <legend>Your script's options to search</legend>
      <div className="jp-clusterlab-help">
        Your script reads them with <code>options()["name"]</code> (from clusterlab_server.training).
      </div>
      {rows.map((row, i) => {
        const id = `clusterlab-search-option-${i}`;
        const title = row.name || `option ${i + 1}`;
        return (
          <div key={i} className="jp-clusterlab-search-row" data-field={`search.options.${row.name}`} data-mode={row.mode}>
            <Labelled id={`${id}-name`} label="Name">
              <input id={`${id}-name`} className="jp-mod-styled" value={row.name} onChange={e => set(i, { ...row, name: e.target.value })} />
            </Labelled>
            <ModeSelect id={id} title={title} row={row} modes={['values', 'range']} onRow={next => set(i, { ...row, ...next })} />
            <SearchInputs
              id={id}
              title={title}
              row={row}
              schema={null}
              searcher={searcher}
              error={errors[`options.${i}`] ?? errors[`search.options.${row.name}`]}
              onRow={next => set(i, { ...row, ...next })}
            />
            <button className="jp-mod-styled jp-mod-reject" onClick={() => onRows(rows.filter((_, j) => j !== i))}>
              Remove
            </button>
          </div>
        );
      })}
      <button className="jp-mod-styled" data-action="add-option" onClick={() => onRows([...rows, { ...FIXED, mode: 'values', name: '' }])}>
        Add an option
      </button>
    </fieldset>
  );
}

function Setting(props: { id: string; field: string; label: string; error?: string; help?: string; children: React.ReactNode }): JSX.Element {
  const { id, field, label, error, help, children } = props;
  return (
    <div className="jp-clusterlab-search-setting" data-field={field}>
      <label htmlFor={id}>{label}</label>
      {children}
      {help && <div className="jp-clusterlab-help">{help}</div>}
      {error && <div className="jp-clusterlab-error">{error}</div>}
    </div>
  );
}

/** Searcher, early stopping, metric and budget. */
export function SearchSettings(props: {
  template: ITemplate;
  settings: ISearchSettings;
  errors: SearchErrors;
  grid: number | null;
  onSettings: (settings: ISearchSettings) => void;
}): JSX.Element {
  const { template, settings, errors, grid, onSettings } = props;
  const set = (change: Partial<ISearchSettings>) => onSettings({ ...settings, ...change });
  const metrics = declaredMetrics(template);
  const free = template.any_metric || template.kind === 'script' || metrics.length === 0;
  const stopping = settings.early_stopping !== 'none';
  return (
    <fieldset className="jp-clusterlab-field jp-clusterlab-search-settings">
      <legend>Search</legend>
      <div className="jp-clusterlab-search-grid">
        <Setting id="clusterlab-searcher" field="searcher" label="Searcher" error={errors.searcher}>
          <select
            id="clusterlab-searcher"
            className="jp-mod-styled"
            value={settings.searcher}
            onChange={e => set({ searcher: e.target.value as ISearchSettings['searcher'] })}
          >
            <option value="tpe">TPE (Bayesian)</option>
            <option value="random">random</option>
            <option value="grid">grid (every combination)</option>
          </select>
        </Setting>
        <Setting id="clusterlab-early-stopping" field="early_stopping" label="Early stopping" error={errors.early_stopping}>
          <select
            id="clusterlab-early-stopping"
            className="jp-mod-styled"
            value={settings.early_stopping}
            onChange={e => set({ early_stopping: e.target.value as ISearchSettings['early_stopping'] })}
          >
            <option value="none">none</option>
            <option value="asha">ASHA (successive halving)</option>
            <option value="hyperband">Hyperband</option>
          </select>
        </Setting>
        {stopping && (
          <Setting
            id="clusterlab-divisor"
            field="divisor"
            label="Divisor"
            error={errors.divisor}
            help="the top 1/divisor of the trials at a rung go on"
          >
            <input
              id="clusterlab-divisor"
              className="jp-mod-styled"
              inputMode="numeric"
              value={settings.divisor}
              onChange={e => set({ divisor: e.target.value })}
            />
          </Setting>
        )}
        {stopping && (
          <Setting
            id="clusterlab-max-rungs"
            field="max_rungs"
            label="Rungs"
            error={errors.max_rungs}
            help="the shortest trial runs epochs / divisor^(rungs - 1)"
          >
            <input
              id="clusterlab-max-rungs"
              className="jp-mod-styled"
              inputMode="numeric"
              value={settings.max_rungs}
              onChange={e => set({ max_rungs: e.target.value })}
            />
          </Setting>
        )}
        <Setting id="clusterlab-metric" field="metric" label="Metric" error={errors.metric}>
          {free ? (
            <input
              id="clusterlab-metric"
              className="jp-mod-styled"
              placeholder="e.g. val_accuracy"
              value={settings.metric}
              onChange={e => set({ metric: e.target.value, maximize: defaultMaximize(template, e.target.value) })}
            />
          ) : (
            <select
              id="clusterlab-metric"
              className="jp-mod-styled"
              value={settings.metric}
              onChange={e => set({ metric: e.target.value, maximize: defaultMaximize(template, e.target.value) })}
            >
              {metrics.map(([name, spec]) => (
                <option key={name} value={name}>
                  {spec.title ? `${spec.title} (${name})` : name}
                </option>
              ))}
            </select>
          )}
          <span className="jp-clusterlab-search-maximize" data-field="maximize">
            <input
              id="clusterlab-maximize"
              type="checkbox"
              checked={settings.maximize}
              onChange={e => set({ maximize: e.target.checked })}
            />
            <label htmlFor="clusterlab-maximize">maximize (larger is better)</label>
          </span>
          {errors.maximize && <div className="jp-clusterlab-error">{errors.maximize}</div>}
        </Setting>
        <Setting
          id="clusterlab-max-trials"
          field="max_trials"
          label="Trials in all"
          error={errors.max_trials}
          help={
            settings.searcher === 'grid'
              ? grid === null
                ? 'empty: the grid\'s size (give each range a count or step)'
                : `empty: the grid's ${grid} point${grid === 1 ? '' : 's'}`
              : 'empty: 16'
          }
        >
          <input
            id="clusterlab-max-trials"
            className="jp-mod-styled"
            inputMode="numeric"
            placeholder={settings.searcher === 'grid' && grid !== null ? String(grid) : settings.searcher === 'grid' ? 'grid' : '16'}
            value={settings.max_trials}
            onChange={e => set({ max_trials: e.target.value })}
          />
        </Setting>
        <Setting
          id="clusterlab-max-concurrent"
          field="max_concurrent_trials"
          label="At once"
          error={errors.max_concurrent_trials}
          help="trials running at the same time; empty: 4 (or your quota)"
        >
          <input
            id="clusterlab-max-concurrent"
            className="jp-mod-styled"
            inputMode="numeric"
            placeholder="4"
            value={settings.max_concurrent_trials}
            onChange={e => set({ max_concurrent_trials: e.target.value })}
          />
        </Setting>
      </div>
      {errors.search && <div className="jp-clusterlab-error" data-field="search">{errors.search}</div>}
    </fieldset>
  );
}
