/**
 * The left-sidebar Jobs panel: every job with status, elapsed time, the size
 * it asked for, progress, small metrics charts, and its actions. The actions
 * are commands (see index.ts), so they also work from the palette and from
 * tests. Cards must read at the sidebar's default width: the name wraps
 * rather than being cut, and the actions are one row of icon buttons (each
 * with its name as tooltip and accessible label). A trial of an experiment
 * says which (and opens it); a job started again after a failure that was
 * not its own says how often, and one Slurm requeued after a node failed
 * under it says that. A waiting job says, under why it waits, when the
 * scheduler expects it to start; a job on several nodes names them. A card
 * lists the job's inputs (dataset versions, other jobs' outputs), each a
 * link; a project filter on top.
 */
import { folderIcon, LabIcon, ReactWidget, redoIcon, stopIcon, UseSignal } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import * as React from 'react';

import { IJob } from './api';
import { MetricsChart } from './chart';
import { jobsIcon, logIcon, tensorBoardIcon } from './icons';
import { InputsList } from './inputs';
import { formatTime, startInWords } from './format';
import { elapsed, ICatalog, isFinal, JobsModel } from './jobsModel';
import { ProjectFilter } from './projectFilter';
import { ProjectsModel } from './projectsModel';

export const CommandIDs = {
  openTemplate: 'clusterlab:open-template',
  openJobs: 'clusterlab:open-jobs',
  openLog: 'clusterlab:open-log',
  cancel: 'clusterlab:cancel-job',
  rerun: 'clusterlab:rerun-job',
  openOutput: 'clusterlab:open-output',
  openTensorBoard: 'clusterlab:open-tensorboard',
  openExperiments: 'clusterlab:open-experiments',
  openExperiment: 'clusterlab:open-experiment',
  cancelExperiment: 'clusterlab:cancel-experiment',
  deleteExperiment: 'clusterlab:delete-experiment',
  rerunBest: 'clusterlab:rerun-best',
  downloadTrials: 'clusterlab:download-trials',
  openDatasets: 'clusterlab:open-datasets',
  openDataset: 'clusterlab:open-dataset',
  createDataset: 'clusterlab:create-dataset',
  deleteDatasetVersion: 'clusterlab:delete-dataset-version',
  showJob: 'clusterlab:show-job',
  openProject: 'clusterlab:open-project'
};

/** What a card needs to know of experiments: a trial job's experiment name. */
export interface IExperimentNames {
  nameOf(job: IJob): string | undefined;
}

export function ActionButton(props: {
  action: string;
  label: string;
  icon: LabIcon;
  onClick: () => void;
  warn?: boolean;
}): JSX.Element {
  return (
    <button
      className={`jp-clusterlab-action${props.warn ? ' jp-mod-warn' : ''}`}
      data-action={props.action}
      title={props.label}
      aria-label={props.label}
      onClick={props.onClick}
    >
      <props.icon.react tag="span" className="jp-clusterlab-action-icon" />
    </button>
  );
}

/** A long name may wrap after its underscores (template_date_time), not mid-word. */
export function breakable(name: string): React.ReactNode[] {
  return name.split(/(?<=_)/).flatMap((part, i) => (i === 0 ? [part] : [<wbr key={i} />, part]));
}

/** "CPU small: 1 core · 2 GB · no GPU · 2 h", or the id when sizes are not known yet. */
function sizeText(job: IJob, catalog: ICatalog): string {
  const profile = catalog.profiles.get(job.profile);
  if (!profile) {
    return `${job.profile} · ${job.hours} h`;
  }
  return `${profile.display_name}: ${profile.summary}${profile.gpus ? '' : ' · no GPU'} · ${job.hours} h`;
}

/** "trial 3 of lr_sweep": a button that opens the experiment. */
function TrialLabel(props: { job: IJob; experiments?: IExperimentNames; commands: CommandRegistry }): JSX.Element | null {
  const { job, experiments, commands } = props;
  if (!job.experiment_id) {
    return null;
  }
  const name = experiments?.nameOf(job) ?? job.experiment_id;
  return (
    <button
      className="jp-clusterlab-trial-label"
      data-action="open-experiment"
      data-experiment-id={job.experiment_id}
      title={`Open experiment ${name}`}
      onClick={() => void commands.execute(CommandIDs.openExperiment, { id: job.experiment_id! })}
    >
      trial {job.trial ?? '?'} of {breakable(name)}
    </button>
  );
}

/** A restart_history entry of Slurm's own requeue (the backend writes them), not of a restart of ours. */
function isRequeue(entry: { reason: string }): boolean {
  return entry.reason.startsWith('requeued by Slurm');
}

function restartsText(job: IJob): string {
  const history = (job.restart_history ?? []).filter(r => !isRequeue(r)).map(r => `${r.time}: ${r.reason}`).join('\n');
  return `started again ${job.restarts} time${job.restarts === 1 ? '' : 's'} after failures that were not its own${history ? `:\n${history}` : ''}`;
}

function requeuesText(job: IJob): string {
  const times = job.requeues === 1 ? 'once' : `${job.requeues} times`;
  const history = (job.restart_history ?? [])
    .filter(isRequeue)
    .map(r => `${r.time}: ${r.reason}`)
    .join('\n');
  return `Slurm requeued it ${times} after a node failed under it; it went on from its checkpoint${history ? `:\n${history}` : ''}`;
}

/** "node1", "node1, node2", "node1, node2, node3 and 5 more" (all of them in the tooltip). */
function nodesText(node: string): string {
  const nodes = node.split(',').filter(n => n);
  return nodes.length <= 3 ? nodes.join(', ') : `${nodes.slice(0, 3).join(', ')} and ${nodes.length - 3} more`;
}

/** "expected to start 14:05 (in 3 min)": while it waits, if the scheduler has an estimate. */
function ExpectedStart(props: { job: IJob }): JSX.Element | null {
  const { job } = props;
  if (job.status !== 'queued' || !job.expected_start) {
    return null;
  }
  return (
    <span
      className="jp-clusterlab-expected-start"
      data-expected-start={job.expected_start}
      title={`The scheduler's estimate (${formatTime(job.expected_start)}): it can start earlier if jobs end before their time, or later if others go ahead`}
    >
      expected to start {startInWords(job.expected_start)}
    </span>
  );
}

function JobCard(props: {
  job: IJob;
  model: JobsModel;
  experiments?: IExperimentNames;
  commands: CommandRegistry;
  selected: boolean;
  onSelect: (selected: boolean) => void;
}): JSX.Element {
  const { job, model, commands } = props;
  const run = (command: string, args: any = { id: job.id }) => () => void commands.execute(command, args);
  const progress = job.progress;
  const percent = progress ? Math.round(progress.fraction * 100) : job.status === 'completed' ? 100 : 0;
  const template = model.catalog.templates.get(job.template);
  const nameId = `clusterlab-job-name-${job.id}`;
  return (
    <li className={`jp-clusterlab-job jp-mod-${job.status}`} data-job-id={job.id} data-job-name={job.name}>
      <div className="jp-clusterlab-job-head">
        {job.tensorboard && (
          <input
            type="checkbox"
            title="Select to compare in TensorBoard"
            aria-label={`Select ${job.name} to compare in TensorBoard`}
            checked={props.selected}
            onChange={e => props.onSelect(e.target.checked)}
          />
        )}
        <span className="jp-clusterlab-job-name" id={nameId} title={`${job.name}\n${job.id}`}>
          {breakable(job.name)}
        </span>
      </div>
      <div className="jp-clusterlab-job-meta" title={job.template}>
        <span className={`jp-clusterlab-status jp-mod-${job.status}`} data-status={job.status}>
          {job.status}
        </span>{' '}
        {template?.name ?? job.template} · <span className="jp-clusterlab-elapsed">{elapsed(job)}</span>
        {job.node && (
          <>
            {' · on\u00a0'}
            <span className="jp-clusterlab-job-nodes" data-nodes={job.node} title={job.node.split(',').join('\n')}>
              {nodesText(job.node)}
            </span>
          </>
        )}
        {(job.restarts ?? 0) > 0 && (
          <>
            {' · '}
            <span className="jp-clusterlab-restarts" data-restarts={job.restarts} title={restartsText(job)}>
              restarted {job.restarts}×
            </span>
          </>
        )}
      </div>
      {(job.requeues ?? 0) > 0 && (
        <div className="jp-clusterlab-job-meta">
          <span className="jp-clusterlab-requeues" data-requeues={job.requeues} title={requeuesText(job)}>
            restarted after node failure ({job.requeues})
          </span>
        </div>
      )}
      <TrialLabel job={job} experiments={props.experiments} commands={commands} />
      <div className="jp-clusterlab-job-meta jp-clusterlab-job-size" data-profile={job.profile}>
        {sizeText(job, model.catalog)}
      </div>
      {job.project && job.project !== 'default' && (
        <div className="jp-clusterlab-job-meta jp-clusterlab-job-project" data-project={job.project}>
          project{' '}
          <button
            className="jp-clusterlab-link"
            title={`Open the page of project ${job.project}`}
            onClick={run(CommandIDs.openProject, { name: job.project })}
          >
            {breakable(job.project)}
          </button>
        </div>
      )}
      <InputsList inputs={job.inputs} commands={commands} />
      {(job.reason || (job.status === 'queued' && job.expected_start)) && (
        <div className="jp-clusterlab-job-reason">
          {job.reason}
          <ExpectedStart job={job} />
        </div>
      )}
      <div
        className="jp-clusterlab-progress"
        role="progressbar"
        aria-labelledby={nameId}
        aria-valuenow={percent}
        aria-valuemin={0}
        aria-valuemax={100}
        title={progress ? `epoch ${progress.epoch} of ${progress.epochs}` : job.status}
      >
        <div className="jp-clusterlab-progress-bar" style={{ width: `${percent}%` }} />
        <span className="jp-clusterlab-progress-text">
          {progress ? `epoch ${progress.epoch}/${progress.epochs}` : ''}
        </span>
      </div>
      <MetricsChart points={model.metrics(job.id)} />
      <div className="jp-clusterlab-job-actions" role="toolbar" aria-label={`Actions on ${job.name}`}>
        <ActionButton action="log" label="Show the log" icon={logIcon} onClick={run(CommandIDs.openLog)} />
        <ActionButton action="output" label="Open the output folder" icon={folderIcon} onClick={run(CommandIDs.openOutput)} />
        {job.tensorboard && (
          <ActionButton
            action="tensorboard"
            label="Open in TensorBoard"
            icon={tensorBoardIcon}
            onClick={run(CommandIDs.openTensorBoard, { jobs: [job.id] })}
          />
        )}
        <ActionButton action="rerun" label="Run again with changed parameters…" icon={redoIcon} onClick={run(CommandIDs.rerun)} />
        {!isFinal(job) && (
          <ActionButton action="cancel" label="Cancel the job" icon={stopIcon} warn onClick={run(CommandIDs.cancel)} />
        )}
      </div>
    </li>
  );
}

function JobsList(props: {
  model: JobsModel;
  experiments?: IExperimentNames;
  projects?: ProjectsModel;
  commands: CommandRegistry;
}): JSX.Element {
  const { model, commands, projects } = props;
  const [selected, setSelected] = React.useState<Set<string>>(new Set());
  const select = (id: string, on: boolean) =>
    setSelected(s => {
      const next = new Set(s);
      on ? next.add(id) : next.delete(id);
      return next;
    });
  return (
    <UseSignal signal={model.changed}>
      {() => {
        const comparable = model.jobs.filter(job => job.tensorboard);
        // in the order they were ticked; a job deleted since drops out
        const chosen = [...selected].filter(id => comparable.some(job => job.id === id));
        return (
          <div className="jp-clusterlab-jobs">
            <div className="jp-clusterlab-jobs-toolbar">
              <h2>Jobs</h2>
              <button className="jp-mod-styled" data-action="refresh" onClick={() => void model.refresh()}>
                Refresh
              </button>
            </div>
            {projects && (
              <ProjectFilter
                panel="jobs"
                projects={projects}
                value={model.project}
                onChange={project => (model.project = project)}
                commands={commands}
              />
            )}
            {comparable.length > 0 && (
              <div className="jp-clusterlab-compare">
                <button
                  className="jp-mod-styled"
                  data-action="compare"
                  disabled={chosen.length === 0}
                  onClick={() => void commands.execute(CommandIDs.openTensorBoard, { jobs: chosen })}
                >
                  Compare in TensorBoard
                </button>
                <span className="jp-clusterlab-help">
                  {chosen.length === 0 ? 'tick the jobs to compare' : `${chosen.length} chosen`}
                </span>
              </div>
            )}
            {model.error && <div className="jp-clusterlab-error">{model.error}</div>}
            {model.jobs.length === 0 && !model.error && (
              <p className="jp-clusterlab-empty">
                {model.project
                  ? `No jobs in project ${model.project}.`
                  : "No jobs yet: start one from a tile in the launcher's Accelerated AI section."}
              </p>
            )}
            <ul className="jp-clusterlab-job-list">
              {model.jobs.map(job => (
                <JobCard
                  key={job.id}
                  job={job}
                  model={model}
                  experiments={props.experiments}
                  commands={commands}
                  selected={selected.has(job.id)}
                  onSelect={on => select(job.id, on)}
                />
              ))}
            </ul>
          </div>
        );
      }}
    </UseSignal>
  );
}

export class JobsPanel extends ReactWidget {
  constructor(
    private model: JobsModel,
    private commands: CommandRegistry,
    private experiments?: IExperimentNames,
    private projects?: ProjectsModel
  ) {
    super();
    this.id = 'clusterlab-jobs';
    this.title.icon = jobsIcon;
    this.title.caption = 'ClusterLab jobs';
    this.addClass('jp-clusterlab-jobs-panel');
  }

  /** Bring a job's card into view and mark it a moment (a link from an input or a dataset). */
  reveal(jobId: string): boolean {
    const card = this.node.querySelector<HTMLElement>(`.jp-clusterlab-job[data-job-id="${CSS.escape(jobId)}"]`);
    if (!card) {
      return false;
    }
    flash(card);
    return true;
  }

  render(): JSX.Element {
    return <JobsList model={this.model} experiments={this.experiments} projects={this.projects} commands={this.commands} />;
  }
}

/** Scroll ``node`` into view and mark it for a moment: where a link led. */
export function flash(node: HTMLElement): void {
  node.scrollIntoView({ block: 'nearest' });
  node.classList.remove('jp-mod-highlight');
  void node.offsetWidth; // restart the animation
  node.classList.add('jp-mod-highlight');
  window.setTimeout(() => node.classList.remove('jp-mod-highlight'), 2500);
}
