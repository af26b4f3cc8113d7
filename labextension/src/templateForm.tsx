/**
 * The form a template becomes: its parameters rendered from the template's JSON
 * Schema by JupyterLab's own rjsf component, plus the job name, the instance
 * size (with live availability) and the hours. The server has the last word:
 * its 4xx `field` is put next to the field it names.
 */
import { ReactWidget } from '@jupyterlab/ui-components';
import { FormComponent } from '@jupyterlab/ui-components';
import { getDefaultRegistry, IChangeEvent } from '@rjsf/core';
import { ErrorSchema, RegistryWidgetsType, RJSFSchema, WidgetProps } from '@rjsf/utils';
import { customizeValidator } from '@rjsf/validator-ajv8';
import * as React from 'react';

import { APIError, IJob, IProfile, ITemplate, postJSON, requestAPI } from './api';

/** The server's rule (service.NAME_RULE), checked here too so the message comes at once. */
export const NAME_RULE = /^[A-Za-z0-9_]{1,100}$/;
export const NAME_RULE_TEXT = 'letters, digits and underscores (A-Z, a-z, 0-9, _), at most 100';

// `format: path` is checked by the server (inside your workspace, exists)
const validator = customizeValidator({ customFormats: { path: () => true } });

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

const WIDGETS = labelledWidgets();

export interface IFormValues {
  name: string;
  params: { [key: string]: any };
  profile: string;
  hours: number;
}

export function defaultJobName(template: ITemplate): string {
  const stamp = new Date().toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '_');
  return `${template.id.replace(/[^A-Za-z0-9]/g, '_')}_${stamp}`;
}

interface IFieldErrors {
  name?: string;
  profile?: string;
  hours?: string;
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
}

function TemplateForm(props: IProps): JSX.Element {
  const { template, profiles, rerunOf } = props;
  const schema = template.parameters as RJSFSchema;
  const [values, setValues] = React.useState<IFormValues>(props.initial);
  const [errors, setErrors] = React.useState<IFieldErrors>({});
  const [paramErrors, setParamErrors] = React.useState<ErrorSchema | undefined>(undefined);
  const [busy, setBusy] = React.useState(false);
  const [submitted, setSubmitted] = React.useState<IJob | null>(null);
  const formContext = React.useMemo(() => ({ defaultFormData: {} }), []);

  const profile = profiles.find(p => p.id === values.profile);
  const nameError = NAME_RULE.test(values.name) ? undefined : `Job name: use ${NAME_RULE_TEXT}`;
  const hoursError =
    profile && !(values.hours > 0 && values.hours <= profile.max_hours)
      ? `Hours: between 0 and ${profile.max_hours} for ${profile.display_name}`
      : undefined;

  const update = (change: Partial<IFormValues>) => {
    setValues(v => ({ ...v, ...change }));
    setErrors({});
    setSubmitted(null);
  };

  const onParams = (e: IChangeEvent<any>) => {
    setValues(v => ({ ...v, params: e.formData }));
    setParamErrors(undefined); // the server's complaint was about the old value
    setErrors({});
    setSubmitted(null);
  };

  const submit = async () => {
    // the schema's own checks, without the server's last complaint (extraErrors)
    const schemaErrors = validator.validateFormData(values.params, schema).errors;
    if (nameError || hoursError || schemaErrors.length > 0) {
      setErrors({ form: 'Correct the fields marked in red first.' });
      return;
    }
    setBusy(true);
    setErrors({});
    try {
      const body = { name: values.name, params: values.params, profile: values.profile, hours: values.hours };
      const job = rerunOf
        ? await postJSON<IJob>(`jobs/${encodeURIComponent(rerunOf)}/rerun`, body)
        : await postJSON<IJob>('jobs', { template: template.id, ...body });
      setSubmitted(job);
      props.onSubmitted(job);
    } catch (error) {
      const e = error as APIError;
      const field = e.field ?? '';
      if (field.startsWith('params.')) {
        setParamErrors(paramsErrorSchema(field, e.message));
        setErrors({ form: e.message });
      } else if (field === 'name' || field === 'profile' || field === 'hours') {
        setErrors({ [field]: e.message, form: e.message });
      } else {
        setErrors({ form: e.message || String(error) });
      }
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="jp-clusterlab-form" data-template={template.id} data-rerun-of={rerunOf ?? undefined}>
      <h2 className="jp-clusterlab-form-title">
        {rerunOf ? `Run again: ${template.name}` : template.name}
      </h2>
      <p className="jp-clusterlab-form-description">{template.description}</p>

      <div className="jp-clusterlab-field" data-field="name">
        <label htmlFor="clusterlab-job-name">Job name</label>
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
        <div className="jp-clusterlab-help" id="clusterlab-hours-help">The job is stopped after this long (at most {profile?.max_hours} h for this size).</div>
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
          uiSchema={{ 'ui:submitButtonOptions': { norender: true } }}
        />
      </div>

      <div className="jp-clusterlab-actions">
        <button
          className="jp-mod-styled jp-mod-accept jp-clusterlab-submit"
          disabled={busy}
          onClick={() => void submit()}
        >
          {busy ? 'Submitting…' : 'Submit'}
        </button>
        {errors.form && <div className="jp-clusterlab-error jp-clusterlab-form-error">{errors.form}</div>}
        {submitted && (
          <div className="jp-clusterlab-submitted">
            Submitted job {submitted.name} ({submitted.id}): see the Jobs panel.
          </div>
        )}
      </div>
    </div>
  );
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
  rerun: IJob | null
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
    ? { name: `${rerun.name}_rerun`.slice(0, 100), params: { ...rerun.params }, profile: rerun.profile, hours: rerun.hours }
    : { name: defaultJobName(template), params: defaults, profile: preferred?.id ?? '', hours: preferred?.default_hours ?? 1 };
  return { template, profiles, initial };
}
