/**
 * The AI Studio's dialogs ("New labelling…", "Export labels…", "Validate…",
 * "Register…", "Publish…") are one form: a few boxes described by plain
 * field specs, sent by one function. As in "Make a dataset from this folder",
 * the dialog stays open while the server works and when it refuses: the
 * server's message goes next to the field it names (`APIError.field`), or
 * under the form when it names none of them.
 */
import { Dialog } from '@jupyterlab/apputils';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { APIError } from './api';
import { SendingDialog } from './formDialog';
import { ProjectInput } from './projectFilter';

export interface IChoice {
  value: string;
  label: string;
}

export interface IFieldSpec {
  /** the form's name of it, and the request's field the server names in its errors */
  name: string;
  label: string;
  help?: string;
  type?: 'text' | 'number' | 'select' | 'project';
  /** a select's choices */
  choices?: IChoice[];
  placeholder?: string;
  min?: number;
  max?: number;
  step?: number;
  /** other request fields the server may name for this box ("val_fraction" for "val") */
  aliases?: string[];
}

export type Values = { [field: string]: string };
export type Errors = { [field: string]: string };

export interface IFormOptions<T> {
  /** names the boxes' ids: `clusterlab-studio-<form>-<field>` */
  form: string;
  fields: IFieldSpec[];
  values: Values;
  /** for a "project" box: the names to offer */
  projects?: string[];
  /** what the form says while the server works */
  busy: string;
  /** a line above the boxes */
  intro?: React.ReactNode;
  /** what the browser can tell before asking the server: field -> message */
  check?: (values: Values) => Errors;
  send: (values: Values) => Promise<T>;
}

/** The dialog's body: the boxes, their errors, and the request it sends. */
export class StudioForm<T> extends ReactWidget {
  private _values: Values;
  private _errors: Errors = {};
  private _busy = false;
  private _result: T | null = null;

  constructor(private options: IFormOptions<T>) {
    super();
    this.addClass('jp-clusterlab-studio-form');
    this._values = { ...options.values };
  }

  get busy(): boolean {
    return this._busy;
  }

  getValue(): T | null {
    return this._result;
  }

  idOf(field: string): string {
    return `clusterlab-studio-${this.options.form}-${field}`;
  }

  /** Send it; true once the server said yes, false when refused (the messages are shown). */
  async submit(): Promise<boolean> {
    this._errors = this.options.check?.(this._values) ?? {};
    if (Object.keys(this._errors).length) {
      this.update();
      return false;
    }
    this._busy = true;
    this.update();
    try {
      this._result = await this.options.send(this._values);
      return true;
    } catch (error) {
      const e = error as APIError;
      const spec = this.options.fields.find(f => f.name === e.field || f.aliases?.includes(e.field ?? ''));
      const field = spec?.name ?? 'form';
      // beside its box, the message need not start with the field's name ("images: ...")
      const message = (e.message || String(error)).replace(new RegExp(`^${e.field ?? field}: `), '');
      this._errors = { [field]: message };
      return false;
    } finally {
      this._busy = false;
      this.update();
    }
  }

  render(): JSX.Element {
    const { fields, intro, busy, projects } = this.options;
    const errors = this._errors;
    const set = (field: string, value: string) => {
      this._values = { ...this._values, [field]: value };
      const cleared = { ...this._errors };
      delete cleared[field];
      delete cleared.form;
      this._errors = cleared;
      this.update();
    };
    return (
      <div className="jp-clusterlab-dataset-fields jp-clusterlab-studio-fields">
        {intro && <p className="jp-clusterlab-help">{intro}</p>}
        {fields.map(spec => {
          const id = this.idOf(spec.name);
          const described = [spec.help && `${id}-help`, errors[spec.name] && `${id}-error`].filter(Boolean).join(' ');
          const control = {
            id,
            className: 'jp-mod-styled',
            value: this._values[spec.name] ?? '',
            disabled: this._busy,
            onChange: (e: React.ChangeEvent<HTMLInputElement | HTMLSelectElement>) => set(spec.name, e.target.value),
            ...(described ? { 'aria-describedby': described } : {}),
            ...(errors[spec.name] ? { 'aria-invalid': true } : {})
          };
          return (
            <div className="jp-clusterlab-field" data-field={spec.name} key={spec.name}>
              <label htmlFor={id}>{spec.label}</label>
              {spec.type === 'select' ? (
                <select {...control}>
                  {(spec.choices ?? []).map(choice => (
                    <option key={choice.value} value={choice.value}>
                      {choice.label}
                    </option>
                  ))}
                </select>
              ) : spec.type === 'project' ? (
                <ProjectInput {...control} names={projects ?? []} />
              ) : (
                <input
                  {...control}
                  type={spec.type === 'number' ? 'number' : 'text'}
                  placeholder={spec.placeholder}
                  min={spec.min}
                  max={spec.max}
                  step={spec.step}
                />
              )}
              {spec.help && (
                <div className="jp-clusterlab-help" id={`${id}-help`}>
                  {spec.help}
                </div>
              )}
              {errors[spec.name] && (
                <div className="jp-clusterlab-error" id={`${id}-error`} data-field={spec.name}>
                  {errors[spec.name]}
                </div>
              )}
            </div>
          );
        })}
        {this._busy && <div className="jp-clusterlab-help jp-clusterlab-busy">{busy}</div>}
        {errors.form && (
          <div className="jp-clusterlab-error" data-field="form" role="alert">
            {errors.form}
          </div>
        )}
      </div>
    );
  }
}

/** Ask, send, and give what the server answered (null when the user cancelled). */
export async function askAndSend<T>(title: string, accept: string, options: IFormOptions<T>): Promise<T | null> {
  const form = new StudioForm(options);
  const dialog = new SendingDialog<T | null>(form, {
    title,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: accept })],
    focusNodeSelector: `#${form.idOf(options.fields[0]?.name ?? '')}`
  });
  dialog.addClass('jp-clusterlab-dataset-dialog');
  dialog.addClass('jp-clusterlab-studio-dialog');
  dialog.node.dataset.form = options.form;
  const result = await dialog.launch();
  return result.button.accept ? result.value : null;
}
