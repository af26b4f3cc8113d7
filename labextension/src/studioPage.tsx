/**
 * The AI Studio, a main-area page: for each labelling of a project, the chain
 * from images to a published model, as a card with its six steps in order
 * (label in Label Studio, export the labels to a dataset version, train a
 * grid, validate a trial's model, register it as a model version, publish it
 * to a git repository), each with its state and a line of detail, and the
 * next step's button. A project filter on top, as in the panels. The steps
 * lie in a row where the page is wide and one under the other where it is
 * narrow (a side-by-side split, a phone), so a card reads at any width.
 */
import { Notification, showDialog, Dialog } from '@jupyterlab/apputils';
import { addIcon, deleteIcon, ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import * as React from 'react';

import { errorText, IChain, IExperiment, IStep, IValidation, requestAPI, StepName, StepState } from './api';
import { tick } from './axes';
import { counted, datasetNameFor, formatTime, shortPath } from './format';
import { studioIcon } from './icons';
import { ActionButton, breakable, CommandIDs } from './jobsPanel';
import { ProjectFilter } from './projectFilter';
import { DEFAULT_PROJECT, ProjectsModel } from './projectsModel';
import { askAndSend, Errors, Values } from './studioForm';
import { exportedRef, nextStep, stepOf, StudioModel } from './studioModel';
import { NAME_RULE, NAME_RULE_TEXT } from './templateForm';

export const StudioCommandIDs = {
  openStudio: 'clusterlab:open-studio',
  openLabelling: 'clusterlab:open-labelling',
  labelFolder: 'clusterlab:label-folder'
};

const STEP_TITLES: { [step in StepName]: string } = {
  label: 'Label',
  export: 'Export',
  train: 'Train',
  validate: 'Validate',
  register: 'Register',
  publish: 'Publish'
};

const STATE_WORDS: { [state in StepState]: string } = {
  todo: 'to do',
  running: 'running',
  done: 'done',
  failed: 'failed'
};

/** The mark in a step's circle: its number until it is done or failed; a running one spins around it. */
function stateMark(state: StepState, index: number): string {
  return state === 'done' ? '✓' : state === 'failed' ? '✕' : String(index + 1);
}

/** What the page needs from JupyterLab: its commands, and opening a file (a validation's report). */
export interface IStudioContext {
  model: StudioModel;
  projects: ProjectsModel;
  commands: CommandRegistry;
  openFile: (path: string) => void;
}

// ----- the dialogs ----------------------------------------------------------------------------

function checkName(field: string, label: string): (values: Values) => Errors {
  return values => (NAME_RULE.test(values[field] ?? '') ? {} : { [field]: `${label}: use ${NAME_RULE_TEXT}.` });
}

/** The "New labelling" dialog; ``images``: a folder or dataset version to fill in (the file browser's). */
export async function newLabelling(context: IStudioContext, images = ''): Promise<void> {
  const { model, projects } = context;
  void projects.refresh();
  const labelling = await askAndSend('New labelling', 'Make the labelling', {
    form: 'labelling',
    projects: projects.names,
    values: { name: '', kind: 'classification', classes: '', images, project: model.project ?? DEFAULT_PROJECT },
    fields: [
      { name: 'name', label: 'Name', help: `Use ${NAME_RULE_TEXT}.` },
      {
        name: 'kind',
        label: 'Kind',
        type: 'select',
        choices: [
          { value: 'classification', label: 'Classification: one class per image' },
          { value: 'detection', label: 'Detection: boxes around the objects' }
        ]
      },
      { name: 'classes', label: 'Classes', placeholder: 'circle, square, triangle', help: 'Separated by commas.' },
      {
        name: 'images',
        label: 'Images',
        placeholder: 'demo/photos or photos:1',
        help: 'A folder in your workspace, or a dataset version NAME:VERSION.'
      },
      { name: 'project', label: 'Project', type: 'project' }
    ],
    busy: 'Making the labelling: finding its images…',
    check: values => {
      const errors = checkName('name', 'Name')(values);
      const classes = values.classes.split(',').map(c => c.trim()).filter(c => c);
      if (classes.length === 0) {
        errors.classes = 'Name at least one class.';
      } else if (new Set(classes).size !== classes.length) {
        errors.classes = 'A class is named twice.';
      }
      if (!values.images.trim()) {
        errors.images = 'Name a folder or a dataset version.';
      }
      if (values.project && !NAME_RULE.test(values.project)) {
        errors.project = `Project: use ${NAME_RULE_TEXT}.`;
      }
      return errors;
    },
    send: values =>
      model.createLabelling({
        name: values.name,
        kind: values.kind as 'classification' | 'detection',
        classes: values.classes.split(',').map(c => c.trim()).filter(c => c),
        images: values.images.trim(),
        ...(values.project && values.project !== DEFAULT_PROJECT ? { project: values.project } : {})
      })
  });
  if (labelling) {
    if (model.project && (labelling.project ?? DEFAULT_PROJECT) !== model.project) {
      model.project = null; // else the page would not show it
    }
    void projects.refresh();
  }
}

async function exportLabels(chain: IChain, context: IStudioContext): Promise<void> {
  const { labelling } = chain;
  const version = await askAndSend(`Export the labels of ${labelling.name}`, 'Export', {
    form: 'export',
    intro: `${labelledText(chain)}: the labelled ones become a new version of the dataset, split in train and val.`,
    values: {
      dataset: chain.labelling.exports[0]?.dataset ?? datasetNameFor(labelling.name),
      val_fraction: '0.2',
      seed: '0'
    },
    fields: [
      { name: 'dataset', label: 'Dataset', help: 'A new name makes a dataset; an existing one gets a new version.' },
      {
        name: 'val_fraction',
        label: 'Validation fraction',
        type: 'number',
        min: 0,
        max: 0.9,
        step: 0.05,
        help: 'The share of each class kept apart to validate the models.'
      },
      { name: 'seed', label: 'Seed', type: 'number', min: 0, step: 1, help: 'The same seed makes the same split.' }
    ],
    busy: 'Exporting: reading the labels from Label Studio and freezing the files…',
    check: values => {
      const errors = checkName('dataset', 'Dataset')(values);
      const fraction = Number(values.val_fraction);
      if (values.val_fraction === '' || !(fraction >= 0 && fraction < 1)) {
        errors.val_fraction = 'A fraction from 0 to below 1.';
      }
      if (!Number.isInteger(Number(values.seed)) || values.seed === '') {
        errors.seed = 'A whole number.';
      }
      return errors;
    },
    send: values =>
      context.model.exportLabels(labelling.id, {
        dataset: values.dataset,
        val_fraction: Number(values.val_fraction),
        seed: Number(values.seed)
      })
  });
  if (version) {
    Notification.success(`Exported the labels to ${version.name}:${version.version}.`, { autoClose: 5000 });
  }
}

async function train(chain: IChain, context: IStudioContext, fail: (message: string) => void): Promise<void> {
  const dataset = exportedRef(chain);
  if (!dataset) {
    return;
  }
  try {
    const experiment = await context.model.train(chain.labelling.id, dataset, chain.labelling.project);
    const trials = counted(experiment.max_trials, 'trial');
    Notification.success(`Started experiment ${experiment.name}: ${trials} on ${dataset}.`, { autoClose: 5000 });
  } catch (error) {
    fail(`Not started: ${errorText(error)}`);
  }
}

/** "trial 2 · accuracy 0.93 · lr=0.01, epochs=5" */
function trialChoiceLabel(experiment: IExperiment, trial: NonNullable<IExperiment['trials']>[number]): string {
  const params = Object.entries(trial.params)
    .filter(([key]) => key in experiment.search)
    .map(([key, value]) => `${key}=${value}`)
    .join(', ');
  const value = trial.value === null ? 'no result' : `${experiment.metric} ${tick(trial.value, 4)}`;
  const best = experiment.best?.job_id === trial.job_id ? ' (best)' : '';
  return `trial ${trial.trial}${best} · ${value}${params ? ` · ${params}` : ''}`;
}

async function validate(chain: IChain, context: IStudioContext, fail: (message: string) => void): Promise<void> {
  const id = stepOf(chain, 'train')?.ref?.experiment;
  const dataset = exportedRef(chain) ?? '';
  let experiment: IExperiment;
  try {
    experiment = await requestAPI<IExperiment>(`experiments/${encodeURIComponent(id ?? '')}`);
  } catch (error) {
    fail(`Cannot list the trials: ${errorText(error)}`);
    return;
  }
  const trials = (experiment.trials ?? []).filter(t => t.status === 'completed');
  if (trials.length === 0) {
    fail(`No trial of ${experiment.name} has completed: there is no model to validate yet.`);
    return;
  }
  trials.sort((a, b) => (a.job_id === experiment.best?.job_id ? -1 : b.job_id === experiment.best?.job_id ? 1 : 0));
  const validation = await askAndSend(`Validate a model of ${experiment.name}`, 'Validate', {
    form: 'validate',
    intro: 'An inference job runs the trial\'s model over the dataset\'s images and writes a report.',
    values: { job: experiment.best?.job_id ?? trials[0].job_id, dataset },
    fields: [
      {
        name: 'job',
        label: 'Trial',
        type: 'select',
        choices: trials.map(t => ({ value: t.job_id, label: trialChoiceLabel(experiment, t) }))
      },
      { name: 'dataset', label: 'Dataset', help: 'Its val split is what the model is scored on (NAME:VERSION).' }
    ],
    busy: 'Starting the inference job…',
    send: values => context.model.validate(chain.labelling.id, values.job, values.dataset.trim())
  });
  if (validation) {
    Notification.success('The validation started: the report comes when its job ends.', { autoClose: 5000 });
  }
}

async function register(chain: IChain, context: IStudioContext, fail: (message: string) => void): Promise<void> {
  const validation = context.model.validation(stepOf(chain, 'validate')?.ref?.validation);
  if (!validation) {
    fail('The validation is not loaded yet: try again in a moment.');
    return;
  }
  const version = await askAndSend(`Register the model of ${chain.labelling.name}`, 'Register', {
    form: 'register',
    intro: `The validated trial's model (${score(validation) || 'validated'}) becomes the next version of a model.`,
    values: { name: datasetNameFor(chain.labelling.name) },
    fields: [
      {
        name: 'name',
        label: 'Model name',
        help: `A new name makes a model (version 1); an existing one gets its next version. ${NAME_RULE_TEXT}.`
      }
    ],
    busy: 'Registering…',
    check: checkName('name', 'Model name'),
    send: values => context.model.register(chain.labelling.id, values.name, validation.job, validation.id)
  });
  if (version) {
    Notification.success(`Registered ${version.model} version ${version.version}.`, { autoClose: 5000 });
  }
}

async function publish(chain: IChain, context: IStudioContext): Promise<void> {
  const ref = stepOf(chain, 'register')?.ref;
  if (!ref?.model || ref.version === undefined) {
    return;
  }
  const { model, version } = ref as { model: string; version: number };
  const published = await askAndSend(`Publish ${model} version ${version}`, 'Publish', {
    form: 'publish',
    intro: 'Its weights, a model card and its record are committed and pushed to the branch.',
    values: { repository: '', branch: 'main' },
    fields: [
      {
        name: 'repository',
        label: 'Repository',
        placeholder: 'https://git.example.org/team/models.git',
        help: 'A git URL: https://…, ssh://… or file:///….git'
      },
      { name: 'branch', label: 'Branch' }
    ],
    busy: 'Committing and pushing…',
    check: (values): Errors => (values.repository.trim() ? {} : { repository: 'Name the repository.' }),
    send: values =>
      context.model.publish(chain.labelling.id, model, version, values.repository.trim(), values.branch.trim())
  });
  if (published?.published) {
    Notification.success(`Published ${model} v${version}: commit ${published.published.commit.slice(0, 8)}.`, {
      autoClose: 5000
    });
  }
}

async function removeLabelling(chain: IChain, context: IStudioContext, fail: (message: string) => void): Promise<void> {
  const answer = await showDialog({
    title: `Delete labelling ${chain.labelling.name}?`,
    body: 'Its Label Studio project and its labels go. Datasets, experiments and models made from it stay.',
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
  });
  if (answer.button.accept) {
    try {
      await context.model.remove(chain.labelling.id);
    } catch (error) {
      fail(`Not deleted: ${errorText(error)}`);
    }
  }
}

// ----- a chain's card ---------------------------------------------------------------------------

function labelledText(chain: IChain): string {
  const { labelled, images } = chain.labelling;
  return labelled === null ? counted(images, 'image') : `${labelled} of ${counted(images, 'image')} labelled`;
}

/** "accuracy 0.93", "mAP50 0.71": a validation's headline figure. */
function score(validation: IValidation | undefined): string {
  const report = validation?.report;
  if (report?.accuracy !== undefined) {
    return `accuracy ${tick(report.accuracy, 3)}`;
  }
  return report?.map50 !== undefined ? `mAP50 ${tick(report.map50, 3)}` : '';
}

/** An export's detail is the version it made ("shapes:3"): its link says it. */
function linksDetail(step: IStep): boolean {
  return step.step === 'export' && !!step.ref?.dataset && step.detail === `${step.ref.dataset}:${step.ref.version}`;
}

/** What the step names, as a link where JupyterLab can show it. */
function StepLinks(props: { step: IStep; context: IStudioContext }): JSX.Element | null {
  const { step, context } = props;
  const { commands } = context;
  const ref = step.ref;
  if (step.step === 'export' && ref?.dataset) {
    const label = `${ref.dataset}:${ref.version}`;
    return (
      <button
        className="jp-clusterlab-link"
        data-action="open-dataset"
        title={`Show ${label} in the Datasets panel`}
        onClick={() =>
          void commands.execute(CommandIDs.openDataset, { name: ref.dataset!, version: ref.version ?? null })
        }
      >
        {breakable(label)}
      </button>
    );
  }
  if (step.step === 'train' && ref?.experiment) {
    return (
      <button
        className="jp-clusterlab-link"
        data-action="open-experiment"
        title="Open the experiment: its trials, curves and best"
        onClick={() => void commands.execute(CommandIDs.openExperiment, { id: ref.experiment! })}
      >
        Experiment
      </button>
    );
  }
  if (step.step === 'validate' && ref?.validation) {
    // the detail says the trial and its score (or why it failed)
    const path = context.model.validation(ref.validation)?.report?.path;
    if (!path) {
      return null;
    }
    return (
      <>
        {!path.startsWith('/') ? (
          <button
            className="jp-clusterlab-link"
            data-action="open-report"
            title={`Open ${path}: per class, the confusion matrix or mAP, with pictures`}
            onClick={() => context.openFile(path)}
          >
            Report
          </button>
        ) : (
          <code title="Outside this server's files">{breakable(shortPath(path))}</code>
        )}
      </>
    );
  }
  return null; // the detail line says the rest: labels, the model's version, the commit
}

function Stepper(props: { chain: IChain; context: IStudioContext }): JSX.Element {
  const { chain, context } = props;
  return (
    <ol className="jp-clusterlab-stepper" aria-label={`Steps of ${chain.labelling.name}`}>
      {chain.steps.map((step, i) => (
        <li
          key={step.step}
          className={`jp-clusterlab-step jp-mod-${step.state}`}
          data-step={step.step}
          data-state={step.state}
        >
          <span className="jp-clusterlab-step-mark" aria-hidden="true">
            {stateMark(step.state, i)}
          </span>
          <span className="jp-clusterlab-step-body">
            <span className="jp-clusterlab-step-title">
              {STEP_TITLES[step.step]}{' '}
              <span className="jp-clusterlab-step-state" data-state={step.state}>
                {step.step === 'label' && step.state === 'running' ? 'under way' : STATE_WORDS[step.state]}
              </span>
            </span>
            {step.detail && !linksDetail(step) && (
              <span className="jp-clusterlab-step-detail">{breakable(step.detail)}</span>
            )}
            <span className="jp-clusterlab-step-links">
              <StepLinks step={step} context={context} />
            </span>
          </span>
        </li>
      ))}
    </ol>
  );
}

/** The next step's button: what it says, and what it does. */
function nextAction(
  chain: IChain,
  context: IStudioContext,
  fail: (message: string) => void
): { action: string; label: string; run: () => void } | null {
  const step = nextStep(chain);
  const open = () => void context.commands.execute(StudioCommandIDs.openLabelling, { id: chain.labelling.id });
  if (!step || step.state === 'running') {
    return step?.step === 'label' ? { action: 'open-labelling', label: 'Open labelling', run: open } : null;
  }
  switch (step.step) {
    case 'label':
      return { action: 'open-labelling', label: 'Open labelling', run: open };
    case 'export':
      return { action: 'export', label: 'Export labels…', run: () => void exportLabels(chain, context) };
    case 'train':
      return { action: 'train', label: 'Train a grid', run: () => void train(chain, context, fail) };
    case 'validate':
      return { action: 'validate', label: 'Validate…', run: () => void validate(chain, context, fail) };
    case 'register':
      return { action: 'register', label: 'Register…', run: () => void register(chain, context, fail) };
    case 'publish':
      return { action: 'publish', label: 'Publish…', run: () => void publish(chain, context) };
  }
}

function ChainCard(props: { chain: IChain; context: IStudioContext }): JSX.Element {
  const { chain, context } = props;
  const { labelling } = chain;
  const [error, setError] = React.useState('');
  const busy = context.model.busy(labelling.id);
  const next = nextAction(chain, context, setError);
  const running = chain.steps.find(step => step.state === 'running');
  const headId = `clusterlab-studio-${labelling.id}`;
  const act = (run: () => void) => () => {
    setError('');
    run();
  };
  const open = act(() => void context.commands.execute(StudioCommandIDs.openLabelling, { id: labelling.id }));
  const canExport = (labelling.labelled ?? 0) > 0 && next?.action !== 'export';
  return (
    <li
      className="jp-clusterlab-studio-chain"
      data-labelling-id={labelling.id}
      data-labelling-name={labelling.name}
      aria-labelledby={headId}
    >
      <div className="jp-clusterlab-job-head">
        <h3 className="jp-clusterlab-job-name" id={headId}>
          {breakable(labelling.name)}
        </h3>
        <span className="jp-clusterlab-badge" data-kind={labelling.kind}>
          {labelling.kind}
        </span>
      </div>
      <div className="jp-clusterlab-job-meta" title={labelling.source}>
        {counted(labelling.images, 'image')} from <code>{breakable(shortPath(labelling.source))}</code> ·{' '}
        {labelling.classes.join(', ')}
        {labelling.project && labelling.project !== DEFAULT_PROJECT ? ` · project ${labelling.project}` : ''} ·{' '}
        {formatTime(labelling.created)}
      </div>
      <Stepper chain={chain} context={context} />
      {busy && (
        <div className="jp-clusterlab-help jp-clusterlab-busy" role="status">
          {busy}
        </div>
      )}
      {error && (
        <div className="jp-clusterlab-error" role="alert">
          {error}
        </div>
      )}
      <div className="jp-clusterlab-studio-actions" role="toolbar" aria-label={`Actions on ${labelling.name}`}>
        {next && (
          <button
            className="jp-mod-styled jp-mod-accept"
            data-action={next.action}
            disabled={!!busy}
            onClick={act(next.run)}
          >
            {next.label}
          </button>
        )}
        {!next && running && <span className="jp-clusterlab-help">{STEP_TITLES[running.step]}: running…</span>}
        {!next && !running && <span className="jp-clusterlab-help">Every step is done.</span>}
        {next?.action !== 'open-labelling' && (
          <button className="jp-mod-styled" data-action="open-labelling" disabled={!!busy} onClick={open}>
            Open labelling
          </button>
        )}
        {canExport && (
          <button
            className="jp-mod-styled"
            data-action="export"
            disabled={!!busy}
            title="Export the labels as they are now to a dataset version"
            onClick={act(() => void exportLabels(chain, context))}
          >
            {labelling.exports.length ? 'Export again…' : 'Export labels…'}
          </button>
        )}
        <span className="jp-clusterlab-studio-spacer" />
        <ActionButton
          action="delete"
          label={`Delete labelling ${labelling.name}…`}
          icon={deleteIcon}
          warn
          onClick={act(() => void removeLabelling(chain, context, setError))}
        />
      </div>
    </li>
  );
}

function StudioPage(props: { context: IStudioContext }): JSX.Element {
  const { context } = props;
  const { model, projects, commands } = context;
  return (
    <UseSignal signal={model.changed}>
      {() => (
        <div className="jp-clusterlab-studio-page">
          <div className="jp-clusterlab-experiment-head">
            <h2>AI Studio</h2>
            <button
              className="jp-mod-styled jp-mod-accept"
              data-action="new-labelling"
              onClick={() => void newLabelling(context)}
            >
              <addIcon.react tag="span" className="jp-clusterlab-button-icon" />
              New labelling…
            </button>
            <button className="jp-mod-styled" data-action="refresh" onClick={() => void model.refresh()}>
              Refresh
            </button>
          </div>
          <p className="jp-clusterlab-help">
            From images to a published model: label them in Label Studio, export the labels to a dataset version,
            train a grid of models, validate one, register it as a model version, publish it to a git repository.
          </p>
          <ProjectFilter
            panel="studio"
            projects={projects}
            value={model.project}
            onChange={project => (model.project = project)}
            commands={commands}
          />
          {model.error && <div className="jp-clusterlab-error">{model.error}</div>}
          {!model.loaded && !model.error && <p className="jp-clusterlab-help">Loading…</p>}
          {model.loaded && model.chains.length === 0 && !model.error && (
            <p className="jp-clusterlab-empty">
              {model.project ? `No labellings in project ${model.project}. ` : 'No labellings yet. '}
              Start with "New labelling…": a folder of images and the classes to give them.
            </p>
          )}
          <ul className="jp-clusterlab-studio-chains">
            {model.chains.map(chain => (
              <ChainCard key={chain.labelling.id} chain={chain} context={context} />
            ))}
          </ul>
        </div>
      )}
    </UseSignal>
  );
}

export class StudioView extends ReactWidget {
  constructor(readonly context: IStudioContext) {
    super();
    this.id = 'clusterlab-studio';
    this.addClass('jp-clusterlab-studio-panel');
    this.title.icon = studioIcon;
    this.title.label = 'AI Studio';
    this.title.caption = 'Label images, export, train, validate, register and publish a model';
    this.title.closable = true;
  }

  render(): JSX.Element {
    return <StudioPage context={this.context} />;
  }
}
