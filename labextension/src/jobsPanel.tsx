/**
 * The left-sidebar Jobs panel: every job with status, elapsed time, progress,
 * a small metrics chart, and its actions. The actions are commands (see
 * index.ts), so they also work from the palette and from tests.
 */
import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import * as React from 'react';

import { IJob } from './api';
import { MetricsChart } from './chart';
import { jobsIcon } from './icons';
import { elapsed, isFinal, JobsModel } from './jobsModel';

export const CommandIDs = {
  openTemplate: 'clusterlab:open-template',
  openJobs: 'clusterlab:open-jobs',
  openLog: 'clusterlab:open-log',
  cancel: 'clusterlab:cancel-job',
  rerun: 'clusterlab:rerun-job',
  openOutput: 'clusterlab:open-output',
  openTensorBoard: 'clusterlab:open-tensorboard'
};

function JobCard(props: {
  job: IJob;
  model: JobsModel;
  commands: CommandRegistry;
  selected: boolean;
  onSelect: (selected: boolean) => void;
}): JSX.Element {
  const { job, model, commands } = props;
  const run = (command: string, args: any = { id: job.id }) => () => void commands.execute(command, args);
  const progress = job.progress;
  const percent = progress ? Math.round(progress.fraction * 100) : job.status === 'completed' ? 100 : 0;
  return (
    <li className={`jp-clusterlab-job jp-mod-${job.status}`} data-job-id={job.id} data-job-name={job.name}>
      <div className="jp-clusterlab-job-head">
        <input
          type="checkbox"
          title="Select to compare in TensorBoard"
          checked={props.selected}
          onChange={e => props.onSelect(e.target.checked)}
        />
        <span className="jp-clusterlab-job-name" title={`${job.id} (${job.template})`}>
          {job.name}
        </span>
        <span className={`jp-clusterlab-status jp-mod-${job.status}`} data-status={job.status}>
          {job.status}
        </span>
      </div>
      <div className="jp-clusterlab-job-meta">
        {job.template} · {job.profile} · <span className="jp-clusterlab-elapsed">{elapsed(job)}</span>
        {job.node ? ` · ${job.node}` : ''}
      </div>
      {job.reason && <div className="jp-clusterlab-job-reason">{job.reason}</div>}
      <div
        className="jp-clusterlab-progress"
        role="progressbar"
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
      <div className="jp-clusterlab-job-actions">
        <button className="jp-mod-styled" data-action="log" onClick={run(CommandIDs.openLog)}>
          Log
        </button>
        {!isFinal(job) && (
          <button className="jp-mod-styled jp-mod-warn" data-action="cancel" onClick={run(CommandIDs.cancel)}>
            Cancel
          </button>
        )}
        <button className="jp-mod-styled" data-action="rerun" onClick={run(CommandIDs.rerun)}>
          Rerun…
        </button>
        <button className="jp-mod-styled" data-action="output" onClick={run(CommandIDs.openOutput)}>
          Output
        </button>
        <button
          className="jp-mod-styled"
          data-action="tensorboard"
          onClick={run(CommandIDs.openTensorBoard, { jobs: [job.id] })}
        >
          TensorBoard
        </button>
      </div>
    </li>
  );
}

function JobsList(props: { model: JobsModel; commands: CommandRegistry }): JSX.Element {
  const { model, commands } = props;
  const [selected, setSelected] = React.useState<Set<string>>(new Set());
  const select = (id: string, on: boolean) =>
    setSelected(s => {
      const next = new Set(s);
      on ? next.add(id) : next.delete(id);
      return next;
    });
  return (
    <UseSignal signal={model.changed}>
      {() => (
        <div className="jp-clusterlab-jobs">
          <div className="jp-clusterlab-jobs-toolbar">
            <h2>Jobs</h2>
            <button className="jp-mod-styled" data-action="refresh" onClick={() => void model.refresh()}>
              Refresh
            </button>
            <button
              className="jp-mod-styled"
              data-action="compare"
              disabled={selected.size === 0}
              onClick={() => void commands.execute(CommandIDs.openTensorBoard, { jobs: [...selected] })}
            >
              Compare in TensorBoard
            </button>
          </div>
          {model.error && <div className="jp-clusterlab-error">{model.error}</div>}
          {model.jobs.length === 0 && !model.error && (
            <p className="jp-clusterlab-empty">No jobs yet: start one from a tile in the launcher's Accelerated AI section.</p>
          )}
          <ul className="jp-clusterlab-job-list">
            {model.jobs.map(job => (
              <JobCard
                key={job.id}
                job={job}
                model={model}
                commands={commands}
                selected={selected.has(job.id)}
                onSelect={on => select(job.id, on)}
              />
            ))}
          </ul>
        </div>
      )}
    </UseSignal>
  );
}

export class JobsPanel extends ReactWidget {
  constructor(
    private model: JobsModel,
    private commands: CommandRegistry
  ) {
    super();
    this.id = 'clusterlab-jobs';
    this.title.icon = jobsIcon;
    this.title.caption = 'ClusterLab jobs';
    this.addClass('jp-clusterlab-jobs-panel');
  }

  render(): JSX.Element {
    return <JobsList model={this.model} commands={this.commands} />;
  }
}
