/**
 * A project's page in the main area (`GET projects/{name}`): its jobs, oldest
 * first, each with what it read (dataset versions, other jobs' outputs) and
 * which jobs read its output, so one can follow how one output fed the next;
 * a link to a job of the page goes to its row. Then the project's datasets and
 * experiments. It is asked again at the panels' interval while it shows.
 */
import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import { Poll } from '@lumino/polling';
import { Signal } from '@lumino/signaling';
import * as React from 'react';

import { errorText, IProjectJob, IProjectPage, requestAPI } from './api';
import { bestText } from './experimentsPanel';
import { counted, formatBytes, formatFiles, formatTime } from './format';
import { logIcon, projectIcon } from './icons';
import { InputsList } from './inputs';
import { ActionButton, breakable, CommandIDs, flash } from './jobsPanel';
import { ICatalog } from './jobsModel';

function started(job: IProjectJob): number {
  return Date.parse(job.submit_time ?? job.start_time ?? '') || 0;
}

/** What the page lists, by name: a link to where it lives (its card, its version list, its view). */
function NameLink(props: { name: string; title: string; onClick: () => void }): JSX.Element {
  return (
    <button className="jp-clusterlab-link jp-clusterlab-strong" title={props.title} onClick={props.onClick}>
      {breakable(props.name)}
    </button>
  );
}

function JobRow(props: {
  job: IProjectJob;
  names: Map<string, string>;
  catalog: ICatalog;
  commands: CommandRegistry;
  onJob: (id: string) => void;
}): JSX.Element {
  const { job, names, catalog, commands, onJob } = props;
  const template = catalog.templates.get(job.template);
  return (
    <tr className={`jp-clusterlab-project-job jp-mod-${job.status}`} data-job-id={job.id} data-job-name={job.name} tabIndex={-1}>
      <td className="jp-clusterlab-project-job-name">
        <NameLink
          name={job.name}
          title={`Show ${job.name} (${job.id}) in the Jobs panel`}
          onClick={() => void commands.execute(CommandIDs.showJob, { id: job.id })}
        />
        <div className="jp-clusterlab-job-meta">
          <span className={`jp-clusterlab-status jp-mod-${job.status}`} data-status={job.status}>
            {job.status}
          </span>{' '}
          {template?.name ?? job.template} · {formatTime(job.submit_time)}
        </div>
      </td>
      <td className="jp-clusterlab-project-job-inputs">
        {job.inputs?.length ? (
          <InputsList inputs={job.inputs} commands={commands} onJob={onJob} />
        ) : (
          <span className="jp-clusterlab-help">none</span>
        )}
      </td>
      <td className="jp-clusterlab-project-used-by" data-used-by={job.used_by.join(' ')}>
        {job.used_by.length ? (
          <ul className="jp-clusterlab-inputs">
            {job.used_by.map(id => (
              <li key={id}>
                <button className="jp-clusterlab-link" data-action="show-job" data-job-id={id} onClick={() => onJob(id)}>
                  {breakable(names.get(id) ?? id)}
                </button>
              </li>
            ))}
          </ul>
        ) : (
          <span className="jp-clusterlab-help">no job yet</span>
        )}
      </td>
      <td className="jp-clusterlab-project-job-actions">
        <ActionButton action="log" label={`Show the log of ${job.name}`} icon={logIcon} onClick={() => void commands.execute(CommandIDs.openLog, { id: job.id })} />
      </td>
    </tr>
  );
}

/** One part of the page under its heading: what it lists, or a line saying there is none. */
function Section(props: {
  /** names the heading's id: "jobs", "datasets", "experiments" */
  part: string;
  title: string;
  help?: string;
  count: number;
  empty: string;
  children: React.ReactNode;
}): JSX.Element {
  const titleId = `clusterlab-project-${props.part}-title`;
  return (
    <section aria-labelledby={titleId}>
      <h3 id={titleId}>{props.title}</h3>
      {props.help && <p className="jp-clusterlab-help">{props.help}</p>}
      {props.count === 0 ? <p className="jp-clusterlab-help">{props.empty}</p> : props.children}
    </section>
  );
}

function ProjectPage(props: {
  name: string;
  page: IProjectPage | null;
  error: string;
  catalog: ICatalog;
  commands: CommandRegistry;
  node: () => HTMLElement;
  onRefresh: () => void;
}): JSX.Element {
  const { name, page, error, catalog, commands } = props;
  const jobs = [...(page?.jobs ?? [])].sort((a, b) => started(a) - started(b));
  const names = new Map(jobs.map(job => [job.id, job.name]));
  const onJob = (id: string) => {
    const row = props.node().querySelector<HTMLElement>(`.jp-clusterlab-project-job[data-job-id="${CSS.escape(id)}"]`);
    if (row) {
      flash(row);
      row.focus({ preventScroll: true });
    } else {
      void commands.execute(CommandIDs.showJob, { id });
    }
  };
  return (
    <div className="jp-clusterlab-project-page" data-project={name}>
      <div className="jp-clusterlab-experiment-head">
        <h2>Project {breakable(name)}</h2>
        <button className="jp-mod-styled" data-action="refresh" onClick={props.onRefresh}>
          Refresh
        </button>
      </div>
      {error && <div className="jp-clusterlab-error">{error}</div>}
      {!page && !error && <p className="jp-clusterlab-help">Loading…</p>}
      {page && (
        <>
          <p className="jp-clusterlab-help">
            {counted(page.jobs.length, 'job')} · {counted(page.experiments.length, 'experiment')} ·{' '}
            {counted(page.datasets.length, 'dataset')}
          </p>
          <Section
            part="jobs"
            title="Jobs and what fed them"
            help="Oldest first: a job's inputs from other jobs are above it. A link to a job of this project goes to its row."
            count={jobs.length}
            empty="No jobs in this project yet."
          >
            <div className="jp-clusterlab-trial-table-wrap">
              <table className="jp-clusterlab-project-jobs">
                <thead>
                  <tr>
                    <th scope="col">Job</th>
                    <th scope="col">Its inputs</th>
                    <th scope="col">Its output went to</th>
                    <th scope="col">
                      <span className="jp-clusterlab-visually-hidden">Actions</span>
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {jobs.map(job => (
                    <JobRow key={job.id} job={job} names={names} catalog={catalog} commands={commands} onJob={onJob} />
                  ))}
                </tbody>
              </table>
            </div>
          </Section>
          <Section part="datasets" title="Datasets" count={page.datasets.length} empty="No datasets in this project.">
            <ul className="jp-clusterlab-project-datasets">
              {page.datasets.map(dataset => (
                <li key={`${dataset.shared}-${dataset.name}`} data-dataset={dataset.name}>
                  <NameLink
                    name={dataset.name}
                    title={`Show ${dataset.name} in the Datasets panel`}
                    onClick={() => void commands.execute(CommandIDs.openDataset, { name: dataset.name, version: null })}
                  />
                  {dataset.shared && <span className="jp-clusterlab-badge"> shared</span>}
                  {': '}
                  {dataset.versions.map((v, i) => (
                    <React.Fragment key={v.version}>
                      {i > 0 && ', '}
                      <button
                        className="jp-clusterlab-link"
                        title={`${formatFiles(v.files)}, ${formatBytes(v.bytes)}, made by ${v.creator} ${formatTime(v.created)}`}
                        onClick={() => void commands.execute(CommandIDs.openDataset, { name: dataset.name, version: v.version })}
                      >
                        v{v.version}
                      </button>
                    </React.Fragment>
                  ))}
                  {dataset.description && <span className="jp-clusterlab-help"> · {dataset.description}</span>}
                </li>
              ))}
            </ul>
          </Section>
          <Section part="experiments" title="Experiments" count={page.experiments.length} empty="No experiments in this project.">
            <ul className="jp-clusterlab-project-experiments">
              {page.experiments.map(experiment => (
                <li key={experiment.id} data-experiment-id={experiment.id}>
                  <NameLink
                    name={experiment.name}
                    title={`Open experiment ${experiment.name}`}
                    onClick={() => void commands.execute(CommandIDs.openExperiment, { id: experiment.id })}
                  />{' '}
                  <span className={`jp-clusterlab-status jp-mod-${experiment.status}`} data-status={experiment.status}>
                    {experiment.status}
                  </span>{' '}
                  {catalog.templates.get(experiment.template)?.name ?? experiment.template} · {bestText(experiment)}
                  <InputsList inputs={experiment.uses} commands={commands} onJob={onJob} />
                </li>
              ))}
            </ul>
          </Section>
        </>
      )}
    </div>
  );
}

/** The main-area widget: one project's page, asked again while it shows. */
export class ProjectView extends ReactWidget {
  private _page: IProjectPage | null = null;
  private _error = '';
  private _changed = new Signal<this, void>(this);
  private _poll: Poll;

  constructor(
    readonly project: string,
    private catalog: ICatalog,
    private commands: CommandRegistry,
    intervalSeconds = 5
  ) {
    super();
    this.id = `clusterlab-project-${project}`;
    this.addClass('jp-clusterlab-project-panel');
    this.title.icon = projectIcon;
    this.title.closable = true;
    this.title.label = `Project: ${project}`;
    this._poll = new Poll({
      factory: () => this._refresh(),
      frequency: { interval: intervalSeconds * 1000, backoff: true, max: 60 * 1000 },
      standby: 'when-hidden',
      name: `clusterlab:project:${project}`
    });
  }

  set interval(seconds: number) {
    this._poll.frequency = { ...this._poll.frequency, interval: Math.max(1, seconds) * 1000 };
  }

  refresh(): Promise<void> {
    return this._poll.refresh();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._poll.dispose();
    super.dispose();
  }

  render(): JSX.Element {
    return (
      <UseSignal signal={this._changed}>
        {() => (
          <ProjectPage
            name={this.project}
            page={this._page}
            error={this._error}
            catalog={this.catalog}
            commands={this.commands}
            node={() => this.node}
            onRefresh={() => void this.refresh()}
          />
        )}
      </UseSignal>
    );
  }

  private async _refresh(): Promise<void> {
    try {
      this._page = await requestAPI<IProjectPage>(`projects/${encodeURIComponent(this.project)}`);
      this._error = '';
    } catch (error) {
      this._error = errorText(error);
      this._changed.emit();
      throw error;
    }
    this._changed.emit();
  }
}
