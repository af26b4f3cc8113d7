/**
 * "Make a dataset from this folder" (the file browser's context menu on a
 * folder): a small dialog that asks the name (the folder's, made to fit the
 * name rule), a description and the project, and makes a version with `POST
 * datasets`. The dialog stays open while the server works and when it refuses:
 * its message goes next to the field it names (the folder's next to the
 * folder). It resolves with the new version.
 */
import { Dialog } from '@jupyterlab/apputils';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { APIError, IDatasetVersion } from './api';
import { DatasetsModel } from './datasetsModel';
import { datasetNameFor } from './format';
import { SendingDialog } from './formDialog';
import { ProjectInput } from './projectFilter';
import { DEFAULT_PROJECT, ProjectsModel } from './projectsModel';
import { NAME_RULE, NAME_RULE_TEXT } from './templateForm';

interface IValues {
  name: string;
  description: string;
  project: string;
}

type Errors = { [field: string]: string };

const FIELDS = ['name', 'folder', 'description', 'project'];

function FieldError(props: { field: string; errors: Errors }): JSX.Element | null {
  const message = props.errors[props.field];
  return message ? (
    <div className="jp-clusterlab-error" id={`clusterlab-dataset-${props.field}-error`} data-field={props.field}>
      {message}
    </div>
  ) : null;
}

/** A box of the form with its label, a line of help, and why it was refused. */
function Field(props: { field: string; label: string; errors: Errors; help?: string; children: React.ReactNode }): JSX.Element {
  const { field, label, errors, help, children } = props;
  return (
    <div className="jp-clusterlab-field" data-field={field}>
      <label htmlFor={`clusterlab-dataset-${field}`}>{label}</label>
      {children}
      {help && <div className="jp-clusterlab-help">{help}</div>}
      <FieldError field={field} errors={errors} />
    </div>
  );
}

/** The dialog's body: the fields, their errors, and the request it sends. */
export class DatasetForm extends ReactWidget {
  private _values: IValues;
  private _errors: Errors = {};
  private _busy = false;
  private _created: IDatasetVersion | null = null;

  constructor(
    readonly folder: string,
    private datasets: DatasetsModel,
    private projects: ProjectsModel
  ) {
    super();
    this.addClass('jp-clusterlab-dataset-form');
    this._values = { name: datasetNameFor(folder), description: '', project: datasets.project ?? DEFAULT_PROJECT };
  }

  get busy(): boolean {
    return this._busy;
  }

  getValue(): IDatasetVersion | null {
    return this._created;
  }

  /** Send it; true once the version is made, false when refused (the messages are shown). */
  async submit(): Promise<boolean> {
    const { name, description, project } = this._values;
    const errors: Errors = {};
    if (!NAME_RULE.test(name)) {
      errors.name = `Name: use ${NAME_RULE_TEXT}.`;
    }
    if (project && !NAME_RULE.test(project)) {
      errors.project = `Project: use ${NAME_RULE_TEXT}.`;
    }
    this._errors = errors;
    if (Object.keys(errors).length) {
      this.update();
      return false;
    }
    this._busy = true;
    this.update();
    try {
      this._created = await this.datasets.create({
        name,
        folder: this.folder,
        ...(description.trim() ? { description: description.trim() } : {}),
        ...(project && project !== DEFAULT_PROJECT ? { project } : {})
      });
      void this.projects.refresh();
      return true;
    } catch (error) {
      const e = error as APIError;
      const field = e.field && FIELDS.includes(e.field) ? e.field : 'form';
      // beside its field, the message need not start with the field's name ("folder: ...")
      const message = (e.message || String(error)).replace(new RegExp(`^${field}: `), '');
      this._errors = { [field]: message }; // as it is: it may start with a file's name
      return false;
    } finally {
      this._busy = false;
      this.update();
    }
  }

  render(): JSX.Element {
    const values = this._values;
    const errors = this._errors;
    const set = (change: Partial<IValues>) => {
      this._values = { ...this._values, ...change };
      const cleared = { ...this._errors };
      Object.keys(change).forEach(key => delete cleared[key]);
      delete cleared.form;
      this._errors = cleared;
      this.update();
    };
    const existing = this.datasets.byName(values.name);
    // what each box of the form takes alike: its id, its value, and whether it was refused
    const control = (field: keyof IValues) => ({
      id: `clusterlab-dataset-${field}`,
      className: 'jp-mod-styled',
      value: values[field],
      disabled: this._busy,
      onChange: (e: React.ChangeEvent<HTMLInputElement | HTMLTextAreaElement>) => set({ [field]: e.target.value }),
      ...(errors[field] ? { 'aria-invalid': true, 'aria-describedby': `clusterlab-dataset-${field}-error` } : {})
    });
    return (
      <div className="jp-clusterlab-dataset-fields">
        <div className="jp-clusterlab-field" data-field="folder">
          <span className="jp-clusterlab-field-title">Folder</span>
          <code className="jp-clusterlab-dataset-folder">{this.folder || '/'}</code>
          <div className="jp-clusterlab-help">Its files are frozen as they are now: later changes make a new version.</div>
          <FieldError field="folder" errors={errors} />
        </div>
        <Field
          field="name"
          label="Name"
          errors={errors}
          help={
            existing && !existing.shared
              ? `${values.name} exists (latest v${existing.latest}): this makes a new version.`
              : `Use ${NAME_RULE_TEXT}.`
          }
        >
          <input {...control('name')} />
        </Field>
        <Field field="description" label="Description" errors={errors}>
          <textarea {...control('description')} rows={2} maxLength={2000} placeholder="what it holds, where it came from" />
        </Field>
        <Field field="project" label="Project" errors={errors}>
          <ProjectInput {...control('project')} names={this.projects.names} />
        </Field>
        {this._busy && <div className="jp-clusterlab-help jp-clusterlab-busy">Making the dataset: reading and hashing its files…</div>}
        {errors.form && (
          <div className="jp-clusterlab-error" data-field="form" role="alert">
            {errors.form}
          </div>
        )}
      </div>
    );
  }
}

/** Ask, make it, and give the new version (null when the user cancelled). */
export async function makeDataset(folder: string, datasets: DatasetsModel, projects: ProjectsModel): Promise<IDatasetVersion | null> {
  void projects.refresh();
  const dialog = new SendingDialog<IDatasetVersion | null>(new DatasetForm(folder, datasets, projects), {
    title: 'Make a dataset from this folder',
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Make the dataset' })],
    focusNodeSelector: '#clusterlab-dataset-name'
  });
  dialog.addClass('jp-clusterlab-dataset-dialog');
  const result = await dialog.launch();
  return result.button.accept ? result.value : null;
}
