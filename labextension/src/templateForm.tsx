/**
 * The form a template becomes: its parameters rendered from the template's JSON
 * Schema by JupyterLab's own rjsf component, plus the job name, the instance
 * size (with live availability) and the hours. The server has the last word:
 * its 4xx `field` is put next to the field it names.
 *
 * A training (or script) template's form also has a search mode ("Search…",
 * searchForm.tsx): the same form then asks for an experiment, many trials of
 * this template over the parameters' values or ranges.
 *
 * A `format: dataset` or `format: job-output` parameter gets a picker
 * (pickers.tsx); the job (or experiment) goes into the project chosen here.
 */
import { ReactWidget } from '@jupyterlab/ui-components';
import { FormComponent } from '@jupyterlab/ui-components';
import { getDefaultRegistry, IChangeEvent } from '@rjsf/core';
import { ErrorSchema, RegistryWidgetsType, RJSFSchema, WidgetProps } from '@rjsf/utils';
import { customizeValidator } from '@rjsf/validator-ajv8';
import * as React from 'react';

import { APIError, IExperiment, IJob, IProfile, ITemplate, postJSON, requestAPI } from './api';
import {
  experimentRequest,
  defaultSettings,
  gridSize,
  IOptionRow,
  ISearchContext,
  ISearchRow,
  ISearchSettings,
  OptionRows,
  SearchableWidget,
  SearchErrors,
  SearchSettings,
  searchType,
  ValueCheck
} from './searchForm';
import { PICKER_WIDGETS, PickerSource } from './pickers';
import { ProjectInput } from './projectFilter';
import { DEFAULT_PROJECT, ProjectsModel } from './projectsModel';

/** The server's rule (service.NAME_RULE), checked here too so the message comes at once. */
export const NAME_RULE = /^[A-Za-z0-9_]{1,100}$/;
export const NAME_RULE_TEXT = 'letters, digits and underscores (A-Z, a-z, 0-9, _), at most 100';

// `format: path` is checked by the server (inside your workspace, exists), and so are a
// dataset's ref ("shapes:2", or a path) and a job's ("job:<id>", or a path)
const validator = customizeValidator({ customFormats: { path: () => true, dataset: () => true, 'job-output': () => true } });

/**
 * rjsf's input widgets, each with a <label for> that screen readers read.
 *
 * JupyterLab's FormComponent draws a field's label as an <h3> that is not tied
 * to the input, so every input and select had no accessible name (axe-core:
 * "label", "select-name"). Its field template is not exported, and a
 * `templates` prop would replace all of JupyterLab's templates, so the fix is
 * one level down: the widgets carry a visually hidden label of their own.
 * Checkbox and radio widgets already draw theirs.
 */
const LABELLED_WIDGETS = ['TextWidget', 'SelectWidget', 'TextareaWidget', 'UpDownWidget', 'RangeWidget',
  'PasswordWidget', 'EmailWidget', 'URLWidget', 'DateWidget', 'FileWidget'];

function labelledWidgets(): RegistryWidgetsType {
  const base = getDefaultRegistry().widgets;
  const widgets: RegistryWidgetsType = {};
  for (const name of LABELLED_WIDGETS) {
    const Widget = base[name];
    if (Widget) {
      widgets[name] = (props: WidgetProps) => (
        <>
          <label htmlFor={props.id} className="jp-clusterlab-visually-hidden">
            {props.label || props.schema.title || props.name}
          </label>
          <Widget {...props} />
        </>
      );
    }
  }
  return widgets;
}

const WIDGETS: RegistryWidgetsType = { ...labelledWidgets(), ...PICKER_WIDGETS };

/** One value against a parameter's own schema: ajv's messages ("must be >= 1"), or ''. */
const checkValue: ValueCheck = (schema, value) => {
  const errors = validator.rawValidation(schema, value).errors ?? [];
  return errors.map(e => e.message).join('; ');
};

/** Templates whose form offers "Search…": their runs report a metric per epoch. */
export const SEARCHABLE_KINDS = ['training', 'script'];

export interface IFormValues {
  name: string;
  params: { [key: string]: any };
  profile: string;
  hours: number;
  project: string;
}

export function defaultJobName(template: ITemplate): string {
  const stamp = new Date().toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '_');
  return `${template.id.replace(/[^A-Za-z0-9]/g, '_')}_${stamp}`;
}

interface IFieldErrors {
  name?: string;
  profile?: string;
  hours?: string;
  project?: string;
  form?: string;
}

/** Server field "params.a.b" -> rjsf's extraErrors {a: {b: {__errors: [...]}}}. */
function paramsErrorSchema(field: string, message: string): ErrorSchema {
  const path = field.split('.').slice(1);
  const root: any = {};
  let node = root;
  for (const key of path) {
    node[key] = node[key] ?? {};
    node = node[key];
  }
  node.__errors = [message];
  return root as ErrorSchema;
}

interface IProps {
  template: ITemplate;
  profiles: IProfile[];
  initial: IFormValues;
  rerunOf: string | null;
  onSubmitted: (job: IJob) => void;
  onExperiment?: (experiment: IExperiment) => void;
  /** what the dataset and job-output pickers offer */
  pickers?: PickerSource;
  /** the project field's suggestions */
  projects?: ProjectsModel;
}

const SETTINGS_FIELDS = ['searcher', 'early_stopping', 'divisor', 'max_rungs', 'metric', 'maximize', 'max_trials',
  'max_concurrent_trials', 'max_restarts'];

/** The server's field -> where the search form shows it: a row ("search.lr"), a setting, or the search as a whole. */
function searchErrorField(field: string, rows: string[]): string {
  if (SETTINGS_FIELDS.includes(field)) {
    return field;
  }
  if (field.startsWith('search.')) {
    // "search.learning_rate.min" belongs to the learning_rate row; "search.options.lr" to that option's
    const key = rows.filter(k => field === `search.${k}` || field.startsWith(`search.${k}.`)).sort((a, b) => b.length - a.length)[0];
    return key ? `search.${key}` : field;
  }
  return 'search';
}

function TemplateForm(props: IProps): JSX.Element {
  const { template, profiles, rerunOf } = props;
  const schema = template.parameters as RJSFSchema;
  const [values, setValues] = React.useState<IFormValues>(props.initial);
  const [errors, setErrors] = React.useState<IFieldErrors>({});
  const [paramErrors, setParamErrors] = React.useState<ErrorSchema | undefined>(undefined);
  const [busy, setBusy] = React.useState(false);
  const [submitted, setSubmitted] = React.useState<IJob | null>(null);
  // search mode
  const searchable = !rerunOf && SEARCHABLE_KINDS.includes(template.kind);
  const [searching, setSearching] = React.useState(false);
  const [rows, setRows] = React.useState<{ [key: string]: ISearchRow }>({});
  const [optionRows, setOptionRows] = React.useState<IOptionRow[]>([]);
  const [settings, setSettings] = React.useState<ISearchSettings>(() => defaultSettings(template));
  const [searchErrors, setSearchErrors] = React.useState<SearchErrors>({});
  const [experiment, setExperiment] = React.useState<IExperiment | null>(null);
  const onRow = React.useCallback((key: string, row: ISearchRow) => {
    setRows(r => ({ ...r, [key]: row }));
    setSearchErrors(e => {
      const { [`search.${key}`]: _, search: __, ...rest } = e;
      return rest;
    });
    setExperiment(null);
  }, []);
  const formContext: ISearchContext = React.useMemo(
    () => ({
      defaultFormData: {},
      search: searching ? rows : null,
      errors: searchErrors,
      searcher: settings.searcher,
      onRow,
      pickers: props.pickers
    }),
    [searching, rows, searchErrors, settings.searcher, onRow, props.pickers]
  );
  const uiSchema = React.useMemo(() => {
    const ui: { [key: string]: any } = { 'ui:submitButtonOptions': { norender: true } };
    if (searching) {
      for (const [key, spec] of Object.entries<any>(schema.properties ?? {})) {
        if (searchType(spec)) {
          ui[key] = { 'ui:widget': SearchableWidget };
        }
      }
    }
    return ui;
  }, [searching, schema]);
  const searched = Object.keys(rows).filter(key => rows[key].mode !== 'fixed');

  const profile = profiles.find(p => p.id === values.profile);
  const nameError = NAME_RULE.test(values.name) ? undefined : `${searching ? 'Experiment' : 'Job'} name: use ${NAME_RULE_TEXT}`;
  const hoursError =
    profile && !(values.hours > 0 && values.hours <= profile.max_hours)
      ? `Hours: between 0 and ${profile.max_hours} for ${profile.display_name}`
      : undefined;
  const projectError = values.project === '' || NAME_RULE.test(values.project) ? undefined : `Project: use ${NAME_RULE_TEXT}`;
  /** "default" is what the server takes when none is given: older servers know no `project` */
  const projectPart = values.project && values.project !== DEFAULT_PROJECT ? { project: values.project } : {};

  const update = (change: Partial<IFormValues>) => {
    setValues(v => ({ ...v, ...change }));
    setErrors({});
    setSubmitted(null);
    setExperiment(null);
  };

  const onParams = (e: IChangeEvent<any>) => {
    setValues(v => ({ ...v, params: e.formData }));
    setParamErrors(undefined); // the server's complaint was about the old value
    setErrors({});
    setSubmitted(null);
  };

  /** The server's refusal, beside the field it names. */
  const showRefusal = (error: unknown, searchFields: string[] = []) => {
    const e = error as APIError;
    const field = e.field ?? '';
    if (field.startsWith('params.')) {
      setParamErrors(paramsErrorSchema(field, e.message));
      setErrors({ form: e.message });
    } else if (field === 'name' || field === 'profile' || field === 'hours' || field === 'project') {
      setErrors({ [field]: e.message, form: e.message });
    } else if (searching && field) {
      setSearchErrors({ [searchErrorField(field, searchFields)]: e.message });
      setErrors({ form: e.message });
    } else {
      setErrors({ form: e.message || String(error) });
    }
  };

  const submitSearch = async () => {
    // the schema's own checks of the fixed values (a searched one's value is not sent)
    const schemaErrors = validator
      .validateFormData(values.params, schema)
      .errors.filter(e => !searched.some(key => (e.property ?? '').replace(/^\./, '').split('.')[0] === key));
    const { request, errors: found } = experimentRequest({
      template,
      name: values.name,
      params: values.params,
      rows,
      optionRows,
      settings,
      profile: values.profile,
      hours: values.hours,
      check: checkValue
    });
    setSearchErrors(found);
    if (nameError || hoursError || projectError || schemaErrors.length > 0 || !request) {
      setErrors({ form: found.search ?? 'Correct the fields marked in red first.' });
      return;
    }
    setBusy(true);
    setErrors({});
    try {
      const answer = await postJSON<IExperiment>('experiments', { ...request, ...projectPart });
      setExperiment(answer);
      props.onExperiment?.(answer);
    } catch (error) {
      showRefusal(error, [...searched, ...optionRows.map(r => `options.${r.name.trim()}`)]);
    } finally {
      setBusy(false);
    }
  };

  const submit = async () => {
    if (searching) {
      return submitSearch();
    }
    // the schema's own checks, without the server's last complaint (extraErrors)
    const schemaErrors = validator.validateFormData(values.params, schema).errors;
    if (nameError || hoursError || projectError || schemaErrors.length > 0) {
      setErrors({ form: 'Correct the fields marked in red first.' });
      return;
    }
    setBusy(true);
    setErrors({});
    try {
      const body = { name: values.name, params: values.params, profile: values.profile, hours: values.hours, ...projectPart };
      const job = rerunOf
        ? await postJSON<IJob>(`jobs/${encodeURIComponent(rerunOf)}/rerun`, body)
        : await postJSON<IJob>('jobs', { template: template.id, ...body });
      setSubmitted(job);
      props.onSubmitted(job);
    } catch (error) {
      showRefusal(error);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div
      className={`jp-clusterlab-form${searching ? ' jp-mod-search' : ''}`}
      data-template={template.id}
      data-rerun-of={rerunOf ?? undefined}
      data-mode={searching ? 'search' : 'job'}
    >
      <div className="jp-clusterlab-form-head">
        <h2 className="jp-clusterlab-form-title">
          {rerunOf ? `Run again: ${template.name}` : searching ? `Search: ${template.name}` : template.name}
        </h2>
        {searchable && (
          <button
            className="jp-mod-styled jp-clusterlab-search-toggle"
            data-action="search"
            aria-pressed={searching}
            title={searching ? 'Back to one job with these values' : 'Run many trials over values or ranges of the parameters, stop the poor ones early, and name the best'}
            onClick={() => {
              setSearching(!searching);
              setErrors({});
              setSearchErrors({});
              setSubmitted(null);
              setExperiment(null);
            }}
          >
            {searching ? 'One job' : 'Search…'}
          </button>
        )}
      </div>
      <p className="jp-clusterlab-form-description">{template.description}</p>
      {searching && (
        <p className="jp-clusterlab-help jp-clusterlab-search-intro">
          An experiment: each parameter below is fixed, or searched over values{' '}
          (or, for numbers, a range). Every trial is a job of the size and hours below.
        </p>
      )}

      <div className="jp-clusterlab-field" data-field="name">
        <label htmlFor="clusterlab-job-name">{searching ? 'Experiment name' : 'Job name'}</label>
        <input
          id="clusterlab-job-name"
          className="jp-mod-styled jp-clusterlab-name-input"
          aria-describedby="clusterlab-job-name-help"
          value={values.name}
          onChange={e => update({ name: e.target.value })}
        />
        <div className="jp-clusterlab-help" id="clusterlab-job-name-help">Use {NAME_RULE_TEXT}.</div>
        {(nameError || errors.name) && <div className="jp-clusterlab-error">{errors.name ?? nameError}</div>}
      </div>

      <div className="jp-clusterlab-field" data-field="project">
        <label htmlFor="clusterlab-job-project">Project</label>
        <ProjectInput
          id="clusterlab-job-project"
          className="jp-mod-styled jp-clusterlab-project-input"
          aria-describedby="clusterlab-job-project-help"
          value={values.project}
          names={props.projects?.names ?? []}
          onFocus={() => void props.projects?.refresh()}
          onChange={e => update({ project: e.target.value })}
        />
        <div className="jp-clusterlab-help" id="clusterlab-job-project-help">
          {searching ? 'Its trials are' : 'It is'} listed under this project (a new name makes a new project).
        </div>
        {(projectError || errors.project) && <div className="jp-clusterlab-error">{errors.project ?? projectError}</div>}
      </div>

      <fieldset className="jp-clusterlab-field jp-clusterlab-profiles" data-field="profile">
        <legend>Instance size</legend>
        {profiles.map(p => {
          const availability = p.availability ?? { state: 'free', reason: '' };
          const impossible = availability.state === 'impossible';
          return (
            <label
              key={p.id}
              className={`jp-clusterlab-profile jp-mod-${availability.state}`}
              data-profile={p.id}
              title={availability.reason || p.description}
            >
              <input
                type="radio"
                name="clusterlab-profile"
                value={p.id}
                checked={values.profile === p.id}
                disabled={impossible}
                onChange={() => update({ profile: p.id, hours: Math.min(values.hours, p.max_hours) })}
              />
              <span className="jp-clusterlab-profile-name">{p.display_name}</span>
              <span className="jp-clusterlab-profile-summary">{p.summary}</span>
              <span className="jp-clusterlab-profile-availability">
                {availability.state === 'free'
                  ? availability.reason
                    ? `available now: ${availability.reason}`
                    : 'available now'
                  : availability.state === 'queue'
                    ? `will queue: ${availability.reason}`
                    : `cannot run here: ${availability.reason}`}
              </span>
            </label>
          );
        })}
        {errors.profile && <div className="jp-clusterlab-error">{errors.profile}</div>}
      </fieldset>

      <div className="jp-clusterlab-field" data-field="hours">
        <label htmlFor="clusterlab-hours">Maximum hours</label>
        <input
          id="clusterlab-hours"
          className="jp-mod-styled jp-clusterlab-hours-input"
          aria-describedby="clusterlab-hours-help"
          type="number"
          min={0}
          step="any"
          max={profile?.max_hours}
          value={Number.isFinite(values.hours) ? values.hours : ''}
          onChange={e => update({ hours: parseFloat(e.target.value) })}
        />
        <div className="jp-clusterlab-help" id="clusterlab-hours-help">
          {searching ? 'Each trial' : 'The job'} is stopped after this long (at most {profile?.max_hours} h for this size).
        </div>
        {(hoursError || errors.hours) && <div className="jp-clusterlab-error">{errors.hours ?? hoursError}</div>}
      </div>

      <h3 className="jp-clusterlab-params-title">Parameters</h3>
      <div className="jp-clusterlab-params">
        <FormComponent
          schema={schema}
          formData={values.params}
          onChange={onParams}
          validator={validator as any}
          liveValidate
          showErrorList={false}
          extraErrors={paramErrors}
          formContext={formContext}
          widgets={WIDGETS}
          uiSchema={uiSchema}
        />
      </div>

      {searching && template.kind === 'script' && (
        <OptionRows
          rows={optionRows}
          errors={searchErrors}
          searcher={settings.searcher}
          onRows={next => {
            setOptionRows(next);
            setSearchErrors({});
          }}
        />
      )}
      {searching && (
        <SearchSettings
          template={template}
          settings={settings}
          errors={searchErrors}
          grid={gridPreview(rows, optionRows, schema)}
          onSettings={next => {
            setSettings(next);
            setSearchErrors({});
            setExperiment(null);
          }}
        />
      )}

      <div className="jp-clusterlab-actions">
        <button
          className="jp-mod-styled jp-mod-accept jp-clusterlab-submit"
          disabled={busy}
          onClick={() => void submit()}
        >
          {busy ? 'Submitting…' : searching ? 'Start the search' : 'Submit'}
        </button>
        {errors.form && <div className="jp-clusterlab-error jp-clusterlab-form-error">{errors.form}</div>}
        {submitted && (
          <div className="jp-clusterlab-submitted">
            Submitted job {submitted.name} ({submitted.id}): see the Jobs panel.
          </div>
        )}
        {experiment && (
          <div className="jp-clusterlab-submitted" data-experiment-id={experiment.id}>
            Started experiment {experiment.name} ({experiment.id}): see the Experiments panel.
            {experiment.notes?.length ? ` ${experiment.notes.join(' ')}` : ''}
          </div>
        )}
      </div>
    </div>
  );
}

/** The grid's size as typed so far (null: a range without count or step, or a row not parsed yet). */
function gridPreview(rows: { [key: string]: ISearchRow }, optionRows: IOptionRow[], schema: any): number | null {
  const search: { [key: string]: any } = {};
  const add = (key: string, row: ISearchRow) => {
    if (row.mode === 'values') {
      search[key] = row.values.split(',').filter(v => v.trim() !== '');
    } else if (row.mode === 'range') {
      search[key] = { min: Number(row.min), max: Number(row.max), count: Number(row.count) || 0, step: Number(row.step) || 0 };
    }
  };
  Object.entries(rows).forEach(([key, row]) => key in (schema.properties ?? {}) && add(key, row));
  optionRows.forEach(row => add(`options.${row.name}`, row));
  return Object.keys(search).length ? gridSize(search) : null;
}

/** The form in a main-area panel. */
export class TemplateFormWidget extends ReactWidget {
  constructor(private options: IProps) {
    super();
    this.addClass('jp-clusterlab-form-panel');
  }

  render(): JSX.Element {
    return <TemplateForm {...this.options} />;
  }
}

/** Fetch what the form needs, with the template's defaults (or a job's values for a rerun). */
export async function formOptions(
  templateId: string,
  rerun: IJob | null,
  /** the project a new job goes in unless the user changes it (the Jobs panel's filter) */
  project: string | null = null
): Promise<{ template: ITemplate; profiles: IProfile[]; initial: IFormValues }> {
  const [template, answer] = await Promise.all([
    requestAPI<ITemplate>(`templates/${encodeURIComponent(templateId)}`),
    // the server's default for this template: the same rule as the API's and the CLI's
    requestAPI<{ profiles: IProfile[]; default: { id: string } }>(`profiles?template=${encodeURIComponent(templateId)}`)
  ]);
  const profiles = answer.profiles;
  const defaults: { [key: string]: any } = {};
  for (const [key, spec] of Object.entries<any>(template.parameters.properties ?? {})) {
    if (spec.default !== undefined && spec.default !== null) {
      defaults[key] = spec.default;
    }
  }
  const preferred = profiles.find(p => p.id === answer.default.id) ?? profiles[0];
  const initial: IFormValues = rerun
    ? {
        name: `${rerun.name}_rerun`.slice(0, 100),
        params: { ...rerun.params },
        profile: rerun.profile,
        hours: rerun.hours,
        project: rerun.project ?? DEFAULT_PROJECT
      }
    : {
        name: defaultJobName(template),
        params: defaults,
        profile: preferred?.id ?? '',
        hours: preferred?.default_hours ?? 1,
        project: project ?? DEFAULT_PROJECT
      };
  return { template, profiles, initial };
}
