/**
 * One experiment in the main area: its project and inputs (each a link, as on
 * a job's card), what it searches and how (searcher, early stopping, metric,
 * budget), its best trial and what to do with it (rerun with more epochs, the
 * trials as CSV, TensorBoard over the trials), the learning curves and the
 * parameters against the metric, and a table of the trials that sorts by any
 * column. It follows the experiment while it runs (the model
 * polls it) and stays as it ended.
 */
import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import * as React from 'react';

import { IExperiment, IProfile, ITemplate, ITrial } from './api';
import { tick } from './axes';
import { counted } from './format';
import { formatValue, LearningCurves, ParamScatter, ScatterLegend, trialColor } from './experimentCharts';
import { ExperimentsModel, isEnded } from './experimentsModel';
import { ICatalog } from './jobsModel';
import { CountsLine } from './experimentsPanel';
import { experimentsIcon, logIcon } from './icons';
import { InputsList } from './inputs';
import { ActionButton, breakable, CommandIDs } from './jobsPanel';
import { DEFAULT_PROJECT } from './projectsModel';

type SortKey = 'trial' | 'status' | 'value' | 'epoch' | 'restarts' | `param:${string}`;

/** Whole-trial order: by ``key``, nulls last either way; ties by trial number. */
export function sortTrials(trials: ITrial[], key: SortKey, ascending: boolean): ITrial[] {
  const valueOf = (t: ITrial): any =>
    key.startsWith('param:') ? t.params[key.slice(6)] : key === 'status' ? t.status : (t as any)[key];
  const compare = (a: any, b: any): number =>
    typeof a === 'number' && typeof b === 'number' ? a - b : String(a).localeCompare(String(b), undefined, { numeric: true });
  return [...trials].sort((a, b) => {
    const [va, vb] = [valueOf(a), valueOf(b)];
    const missing = Number(va === null || va === undefined) - Number(vb === null || vb === undefined);
    if (missing !== 0) {
      return missing;
    }
    const order = va === null || va === undefined ? 0 : compare(va, vb) * (ascending ? 1 : -1);
    return order !== 0 ? order : a.trial - b.trial;
  });
}

function searchText(spec: any): string {
  if (Array.isArray(spec)) {
    return spec.map(formatValue).join(', ');
  }
  const parts = [`${formatValue(spec.min)} … ${formatValue(spec.max)}`];
  if (spec.log) {
    parts.push('log');
  }
  if (spec.step) {
    parts.push(`step ${formatValue(spec.step)}`);
  }
  if (spec.count) {
    parts.push(`${spec.count} points`);
  }
  return parts.join(', ');
}

/** The experiment's project (a link to its page) and what every trial mounts, as a job's card lists its inputs. */
function Provenance(props: { experiment: IExperiment; commands: CommandRegistry }): JSX.Element {
  const { experiment: e, commands } = props;
  const project = e.project ?? DEFAULT_PROJECT;
  return (
    <>
      <dt>Project</dt>
      <dd data-fact="project">
        <button
          className="jp-clusterlab-link"
          data-action="open-project"
          title={`Open the page of project ${project}`}
          onClick={() => void commands.execute(CommandIDs.openProject, { name: project })}
        >
          {breakable(project)}
        </button>
      </dd>
      <dt>Inputs</dt>
      <dd data-fact="inputs">
        {e.uses?.length ? (
          <>
            <InputsList inputs={e.uses} commands={commands} />
            <div className="jp-clusterlab-help">Every trial reads these versions, pinned when the experiment started.</div>
          </>
        ) : (
          <span className="jp-clusterlab-help">none</span>
        )}
      </dd>
    </>
  );
}

function Header(props: { experiment: IExperiment; template?: ITemplate; profile?: IProfile; commands: CommandRegistry }): JSX.Element {
  const { experiment: e, template, profile, commands } = props;
  const best = e.best;
  const stopping =
    e.early_stopping === 'none' ? 'no early stopping' : `early stopping ${e.early_stopping} (divisor ${e.divisor}, ${e.max_rungs} rungs)`;
  return (
    <dl className="jp-clusterlab-experiment-facts">
      <dt>Template</dt>
      <dd>{template?.name ?? e.template}</dd>
      <Provenance experiment={e} commands={commands} />
      <dt>Search</dt>
      <dd>
        <span data-fact="searcher">{e.searcher}</span>, {stopping}
        <ul className="jp-clusterlab-search-space">
          {Object.entries(e.search).map(([key, spec]) => (
            <li key={key}>
              <code>{key}</code>: {searchText(spec)}
            </li>
          ))}
        </ul>
      </dd>
      <dt>Metric</dt>
      <dd data-fact="metric">
        {e.metric}, {e.maximize ? 'maximized (higher is better)' : 'minimized (lower is better)'}
      </dd>
      <dt>Budget</dt>
      <dd data-fact="budget">
        {counted(e.max_trials, 'trial')}, {e.max_concurrent_trials} at once{e.epochs ? `, ${counted(e.epochs, 'epoch')} each` : ''}; each on {profile ? `${profile.display_name} (${profile.summary})` : e.profile} for up to {e.hours} h
      </dd>
      <dt>Trials</dt>
      <dd>
        {e.counts.trials} so far: <CountsLine experiment={e} />
      </dd>
      <dt>Best</dt>
      <dd className="jp-clusterlab-experiment-best" data-fact="best">
        {best ? (
          <>
            trial {best.trial}: <b>{e.metric} {tick(best.value, 4)}</b>
            {best.epoch !== null ? ` at epoch ${best.epoch}` : ''}, with{' '}
            {Object.entries(best.params)
              .map(([k, v]) => `${k} = ${formatValue(v)}`)
              .join(', ')}
            {best.model_path && (
              <div className="jp-clusterlab-help">
                model: <code>{best.model_path}</code>
              </div>
            )}
          </>
        ) : (
          'none yet'
        )}
      </dd>
    </dl>
  );
}

function SortHeader(props: {
  label: string;
  sortKey: SortKey;
  sort: { key: SortKey; ascending: boolean };
  onSort: (key: SortKey) => void;
  numeric?: boolean;
}): JSX.Element {
  const { label, sortKey, sort, onSort } = props;
  const active = sort.key === sortKey;
  return (
    <th
      scope="col"
      aria-sort={active ? (sort.ascending ? 'ascending' : 'descending') : 'none'}
      className={props.numeric ? 'jp-mod-numeric' : undefined}
      data-sort-key={sortKey}
    >
      <button className="jp-clusterlab-sort" onClick={() => onSort(sortKey)} title={`Sort by ${label}`}>
        {label}
        <span className="jp-clusterlab-sort-mark" aria-hidden="true">
          {active ? (sort.ascending ? ' ▲' : ' ▼') : ''}
        </span>
      </button>
    </th>
  );
}

function TrialTable(props: { experiment: IExperiment; trials: ITrial[]; commands: CommandRegistry }): JSX.Element {
  const { experiment, trials, commands } = props;
  // best first, as the CLI shows them
  const [sort, setSort] = React.useState<{ key: SortKey; ascending: boolean }>({ key: 'value', ascending: !experiment.maximize });
  const onSort = (key: SortKey) => setSort(s => ({ key, ascending: s.key === key ? !s.ascending : true }));
  const params = Object.keys(experiment.search);
  const rows = sortTrials(trials, sort.key, sort.ascending);
  return (
    <div className="jp-clusterlab-trial-table-wrap">
      <table className="jp-clusterlab-trial-table">
        <caption className="jp-clusterlab-visually-hidden">Trials of {experiment.name}; a column's button sorts by it</caption>
        <thead>
          <tr>
            <SortHeader label="trial" sortKey="trial" sort={sort} onSort={onSort} numeric />
            <SortHeader label="status" sortKey="status" sort={sort} onSort={onSort} />
            {params.map(p => (
              <SortHeader key={p} label={p} sortKey={`param:${p}`} sort={sort} onSort={onSort} numeric />
            ))}
            <SortHeader label={experiment.metric} sortKey="value" sort={sort} onSort={onSort} numeric />
            <SortHeader label="epoch" sortKey="epoch" sort={sort} onSort={onSort} numeric />
            <SortHeader label="restarts" sortKey="restarts" sort={sort} onSort={onSort} numeric />
            <th scope="col">
              <span className="jp-clusterlab-visually-hidden">log</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {rows.map(t => (
            <tr
              key={t.trial}
              data-trial={t.trial}
              data-status={t.status}
              className={experiment.best?.trial === t.trial ? 'jp-mod-best' : undefined}
              title={t.reason || t.name}
            >
              <td className="jp-mod-numeric" data-column="trial">
                <span className="jp-clusterlab-chart-swatch" style={{ background: trialColor(t.trial) }} />
                {t.trial}
                {experiment.best?.trial === t.trial && <span className="jp-clusterlab-best-mark"> best</span>}
              </td>
              <td data-column="status">
                <span className={`jp-clusterlab-status jp-mod-${t.status}`}>{t.status}</span>
              </td>
              {params.map(p => (
                <td key={p} className="jp-mod-numeric" data-column={`param:${p}`}>
                  {p in t.params ? formatValue(t.params[p]) : ''}
                </td>
              ))}
              <td className="jp-mod-numeric" data-column="value">
                {t.value === null ? '' : tick(t.value, 4)}
              </td>
              <td className="jp-mod-numeric" data-column="epoch">
                {t.epoch === null ? '' : t.epochs ? `${t.epoch}/${t.epochs}` : t.epoch}
              </td>
              <td className="jp-mod-numeric" data-column="restarts">
                {t.restarts}
              </td>
              <td>
                <ActionButton
                  action="log"
                  label={`Show the log of trial ${t.trial}`}
                  icon={logIcon}
                  onClick={() => void commands.execute(CommandIDs.openLog, { id: t.job_id })}
                />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function ExperimentPage(props: {
  id: string;
  model: ExperimentsModel;
  catalog: ICatalog;
  commands: CommandRegistry;
}): JSX.Element {
  const { id, model, catalog, commands } = props;
  const experiment = model.detail(id);
  if (!experiment) {
    const error = model.detailError(id);
    return (
      <div className="jp-clusterlab-experiment-page">
        {error ? <div className="jp-clusterlab-error">{error}</div> : <p className="jp-clusterlab-help">Loading…</p>}
      </div>
    );
  }
  const trials = experiment.trials ?? [];
  const run = (command: string) => () => void commands.execute(command, { id });
  const started = trials.filter(t => t.status !== 'queued').map(t => t.job_id);
  return (
    <div className="jp-clusterlab-experiment-page" data-experiment-id={id} data-status={experiment.status}>
      <div className="jp-clusterlab-experiment-head">
        <h2>{experiment.name}</h2>
        <span className={`jp-clusterlab-status jp-mod-${experiment.status}`} data-status={experiment.status}>
          {experiment.status}
        </span>
      </div>
      {experiment.reason && <p className="jp-clusterlab-job-reason">{experiment.reason}</p>}
      {experiment.notes.map((note, i) => (
        <p key={i} className="jp-clusterlab-help jp-clusterlab-note">
          {note}
        </p>
      ))}
      {model.detailError(id) && <div className="jp-clusterlab-error">{model.detailError(id)}</div>}
      <Header
        experiment={experiment}
        template={catalog.templates.get(experiment.template)}
        profile={catalog.profiles.get(experiment.profile)}
        commands={commands}
      />
      <div className="jp-clusterlab-experiment-actions">
        <button className="jp-mod-styled jp-mod-accept" data-action="rerun-best" disabled={!experiment.best} onClick={run(CommandIDs.rerunBest)}>
          Rerun best with more epochs…
        </button>
        <button className="jp-mod-styled" data-action="csv" disabled={trials.length === 0} onClick={run(CommandIDs.downloadTrials)}>
          Download CSV
        </button>
        <button
          className="jp-mod-styled"
          data-action="tensorboard"
          disabled={started.length === 0}
          onClick={() =>
            void commands.execute(CommandIDs.openTensorBoard, { jobs: started, label: `experiment ${experiment.name}` })
          }
        >
          Compare in TensorBoard
        </button>
        {isEnded(experiment) ? (
          <button className="jp-mod-styled jp-mod-warn" data-action="delete" onClick={run(CommandIDs.deleteExperiment)}>
            Delete…
          </button>
        ) : (
          <button className="jp-mod-styled jp-mod-warn" data-action="cancel" onClick={run(CommandIDs.cancelExperiment)}>
            Cancel the experiment
          </button>
        )}
      </div>
      <section className="jp-clusterlab-experiment-charts" aria-label="Charts">
        <LearningCurves experiment={experiment} trials={trials} />
        <div className="jp-clusterlab-scatters">
          <h3>Parameters against {experiment.metric}</h3>
          <div className="jp-clusterlab-scatter-grid">
            {Object.keys(experiment.search).map(param => (
              <ParamScatter key={param} experiment={experiment} trials={trials} param={param} />
            ))}
          </div>
          <ScatterLegend hasBest={!!experiment.best} />
        </div>
      </section>
      <h3>Trials</h3>
      {trials.length === 0 ? <p className="jp-clusterlab-help">No trial started yet.</p> : <TrialTable experiment={experiment} trials={trials} commands={commands} />}
    </div>
  );
}

/** The main-area widget; it asks the model to keep its experiment fresh while it is open. */
export class ExperimentView extends ReactWidget {
  constructor(
    readonly experimentId: string,
    private model: ExperimentsModel,
    private catalog: ICatalog,
    private commands: CommandRegistry
  ) {
    super();
    this.id = `clusterlab-experiment-${experimentId}`;
    this.addClass('jp-clusterlab-experiment-panel');
    this.title.icon = experimentsIcon;
    this.title.closable = true;
    this.title.label = `Experiment: ${model.byId(experimentId)?.name ?? experimentId}`;
    model.watch(experimentId);
    model.changed.connect(this._onChanged, this);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.model.changed.disconnect(this._onChanged, this);
    this.model.unwatch(this.experimentId);
    super.dispose();
  }

  render(): JSX.Element {
    return (
      <UseSignal signal={this.model.changed}>
        {() => <ExperimentPage id={this.experimentId} model={this.model} catalog={this.catalog} commands={this.commands} />}
      </UseSignal>
    );
  }

  private _onChanged(): void {
    const name = this.model.byId(this.experimentId)?.name;
    if (name) {
      this.title.label = `Experiment: ${name}`;
    }
  }
}
