/**
 * The left-sidebar Experiments panel, beside the Jobs panel: each experiment
 * with its status, its trials (done, running, pruned, failed) and its best
 * value, and the actions (open, cancel while it runs, delete once it ended).
 * Cards read at the sidebar's default width, as the job cards do. A project
 * filter on top, as in the Jobs panel.
 */
import { deleteIcon, launchIcon, ReactWidget, stopIcon, UseSignal } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import * as React from 'react';

import { IExperiment, ITemplate } from './api';
import { tick } from './axes';
import { experimentsIcon } from './icons';
import { ActionButton, breakable, CommandIDs } from './jobsPanel';
import { ExperimentsModel, isEnded } from './experimentsModel';
import { ProjectFilter } from './projectFilter';
import { ProjectsModel } from './projectsModel';

/** "3 done · 1 running · 1 pruned · 0 failed" (and the queued, when any). */
export function CountsLine(props: { experiment: IExperiment }): JSX.Element {
  const { counts } = props.experiment;
  const parts: [string, string, number][] = [
    ['completed', 'done', counts.completed],
    ['running', 'running', counts.running],
    ['pruned', 'pruned', counts.pruned],
    ['failed', 'failed', counts.failed]
  ];
  if (counts.queued) {
    parts.push(['queued', 'queued', counts.queued]);
  }
  if (counts.cancelled) {
    parts.push(['cancelled', 'cancelled', counts.cancelled]);
  }
  return (
    <span className="jp-clusterlab-counts" title={`${counts.trials} trials so far, of at most ${props.experiment.max_trials}`}>
      {parts.map(([key, word, n], i) => (
        <React.Fragment key={key}>
          {i > 0 && ' · '}
          <span className={`jp-clusterlab-count jp-mod-${key}${n === 0 ? ' jp-mod-zero' : ''}`} data-count={key}>
            {n} {word}
          </span>
        </React.Fragment>
      ))}
    </span>
  );
}

/** "best val_accuracy 0.93 (trial 2)", or what stands in for it. */
export function bestText(experiment: IExperiment): string {
  const best = experiment.best;
  if (!best) {
    return experiment.status === 'running' ? 'no result yet' : 'no trial gave a result';
  }
  return `best ${experiment.metric} ${tick(best.value, 4)} (trial ${best.trial})`;
}

function ExperimentCard(props: { experiment: IExperiment; template?: ITemplate; commands: CommandRegistry }): JSX.Element {
  const { experiment, template, commands } = props;
  const run = (command: string) => () => void commands.execute(command, { id: experiment.id });
  return (
    <li
      className={`jp-clusterlab-experiment jp-mod-${experiment.status}`}
      data-experiment-id={experiment.id}
      data-experiment-name={experiment.name}
    >
      <div className="jp-clusterlab-job-head">
        <button
          className="jp-clusterlab-experiment-name"
          title={`Open ${experiment.name}\n${experiment.id}`}
          onClick={run(CommandIDs.openExperiment)}
        >
          {breakable(experiment.name)}
        </button>
      </div>
      <div className="jp-clusterlab-job-meta" title={experiment.template}>
        <span className={`jp-clusterlab-status jp-mod-${experiment.status}`} data-status={experiment.status}>
          {experiment.status}
        </span>{' '}
        {template?.name ?? experiment.template} · {experiment.searcher}
        {experiment.early_stopping !== 'none' ? ` + ${experiment.early_stopping}` : ''}
      </div>
      <div className="jp-clusterlab-job-meta">
        <CountsLine experiment={experiment} />
      </div>
      <div className={`jp-clusterlab-best${experiment.best ? '' : ' jp-mod-none'}`} data-best={experiment.best?.value ?? ''}>
        {bestText(experiment)}
      </div>
      {experiment.reason && isEnded(experiment) && <div className="jp-clusterlab-job-reason">{experiment.reason}</div>}
      <div className="jp-clusterlab-job-actions" role="toolbar" aria-label={`Actions on ${experiment.name}`}>
        <ActionButton action="open" label="Open the experiment" icon={launchIcon} onClick={run(CommandIDs.openExperiment)} />
        {isEnded(experiment) ? (
          <ActionButton action="delete" label="Delete the experiment and its trials…" icon={deleteIcon} warn onClick={run(CommandIDs.deleteExperiment)} />
        ) : (
          <ActionButton action="cancel" label="Cancel the experiment (and its running trials)" icon={stopIcon} warn onClick={run(CommandIDs.cancelExperiment)} />
        )}
      </div>
    </li>
  );
}

function ExperimentsList(props: {
  model: ExperimentsModel;
  templates: Map<string, ITemplate>;
  projects?: ProjectsModel;
  commands: CommandRegistry;
}): JSX.Element {
  const { model, templates, projects, commands } = props;
  return (
    <UseSignal signal={model.changed}>
      {() => (
        <div className="jp-clusterlab-experiments">
          <div className="jp-clusterlab-jobs-toolbar">
            <h2>Experiments</h2>
            <button className="jp-mod-styled" data-action="refresh" onClick={() => void model.refresh()}>
              Refresh
            </button>
          </div>
          {projects && (
            <ProjectFilter
              panel="experiments"
              projects={projects}
              value={model.project}
              onChange={project => (model.project = project)}
              commands={commands}
            />
          )}
          {model.error && <div className="jp-clusterlab-error">{model.error}</div>}
          {model.loaded && model.experiments.length === 0 && !model.error && (
            <p className="jp-clusterlab-empty">
              {model.project
                ? `No experiments in project ${model.project}.`
                : 'No experiments yet: open a training template from the launcher and press Search….'}
            </p>
          )}
          <ul className="jp-clusterlab-job-list jp-clusterlab-experiment-list">
            {model.experiments.map(experiment => (
              <ExperimentCard
                key={experiment.id}
                experiment={experiment}
                template={templates.get(experiment.template)}
                commands={commands}
              />
            ))}
          </ul>
        </div>
      )}
    </UseSignal>
  );
}

export class ExperimentsPanel extends ReactWidget {
  constructor(
    private model: ExperimentsModel,
    private templates: Map<string, ITemplate>,
    private commands: CommandRegistry,
    private projects?: ProjectsModel
  ) {
    super();
    this.id = 'clusterlab-experiments';
    this.title.icon = experimentsIcon;
    this.title.caption = 'ClusterLab experiments';
    this.addClass('jp-clusterlab-experiments-panel');
  }

  render(): JSX.Element {
    return <ExperimentsList model={this.model} templates={this.templates} projects={this.projects} commands={this.commands} />;
  }
}
