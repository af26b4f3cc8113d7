/**
 * An experiment's two views of its trials, in SVG on the shared axes (axes.tsx):
 * every trial's learning curve (the metric by epoch) on one chart, pruned
 * trials dashed and ending in a cross where they were stopped, the best one
 * drawn thick; and one scatter per searched parameter, the parameter against
 * the metric (a log axis when the range was searched on one).
 */
import * as React from 'react';

import { IExperiment, ITrial, SearchSpec } from './api';
import { COLORS, epochTicks, extent, IPlotArea, IScale, linearScale, logScale, polyline, tick, XAxis, xRange, YAxis, yRange } from './axes';

const CURVES: IPlotArea = { width: 560, height: 240, margin: { left: 44, right: 12, top: 10, bottom: 18 } };
const SCATTER: IPlotArea = { width: 260, height: 150, margin: { left: 44, right: 12, top: 8, bottom: 18 } };

/** A trial's colour: the same on the curves, the scatters and the table. */
export function trialColor(trial: number): string {
  return COLORS[trial % COLORS.length];
}

function isBest(experiment: IExperiment, trial: ITrial): boolean {
  return experiment.best?.trial === trial.trial;
}

/** Dash patterns: what a line's style says about how its trial ended. */
const DASH: { [status: string]: string | undefined } = { pruned: '5 3', failed: '1.5 2.5', cancelled: '1.5 2.5' };

function Cross(props: { x: number; y: number; color: string }): JSX.Element {
  const { x, y, color } = props;
  const d = 3.5;
  return (
    <path
      className="jp-clusterlab-curve-end"
      d={`M${x - d},${y - d}L${x + d},${y + d}M${x - d},${y + d}L${x + d},${y - d}`}
      stroke={color}
      strokeWidth={2}
    />
  );
}

function trialTitle(experiment: IExperiment, trial: ITrial): string {
  const params = Object.entries(trial.params)
    .map(([k, v]) => `${k}=${formatValue(v)}`)
    .join(', ');
  const value = trial.value === null ? 'no value yet' : `${experiment.metric} ${tick(trial.value, 4)} at epoch ${trial.epoch}`;
  return `trial ${trial.trial} (${trial.status}${isBest(experiment, trial) ? ', best' : ''}): ${params}; ${value}`;
}

export function formatValue(value: any): string {
  return typeof value === 'number' ? tick(value, 4) : String(value);
}

/** The legend's line samples, drawn as the chart draws them. */
function Sample(props: { dash?: string; width?: number; cross?: boolean; dot?: boolean }): JSX.Element {
  return (
    <svg className="jp-clusterlab-legend-sample" viewBox="0 0 28 10" width={28} height={10} aria-hidden="true">
      <line x1={2} x2={props.cross || props.dot ? 21 : 26} y1={5} y2={5} stroke="currentColor" strokeWidth={props.width ?? 1.5} strokeDasharray={props.dash} />
      {props.cross && <path d="M20,2L26,8M20,8L26,2" stroke="currentColor" strokeWidth={2} />}
      {props.dot && <circle cx={23} cy={5} r={3} fill="currentColor" />}
    </svg>
  );
}

export function LearningCurves(props: { experiment: IExperiment; trials: ITrial[] }): JSX.Element {
  const { experiment, trials } = props;
  const drawn = trials.filter(t => t.curve.length > 0);
  const epochs = Math.max(1, experiment.epochs ?? 0, ...trials.map(t => t.epochs ?? 0), ...drawn.flatMap(t => t.curve.map(p => p[0])));
  const x = linearScale([1, epochs], xRange(CURVES), epochTicks(epochs));
  const y = linearScale(extent(drawn.flatMap(t => t.curve.map(p => p[1])), 0.05), yRange(CURVES));
  // the best last, so it is on top
  const order = [...drawn].sort((a, b) => Number(isBest(experiment, a)) - Number(isBest(experiment, b)));
  const pruned = trials.filter(t => t.status === 'pruned').length;
  const ended = trials.filter(t => t.status === 'failed' || t.status === 'cancelled').length;
  return (
    <figure className="jp-clusterlab-experiment-chart jp-clusterlab-curves">
      <figcaption>
        <span className="jp-clusterlab-chart-title">
          {experiment.metric} by epoch, every trial ({experiment.maximize ? 'higher' : 'lower'} is better)
        </span>
      </figcaption>
      <svg
        className="jp-clusterlab-chart-plot"
        data-chart="curves"
        viewBox={`0 0 ${CURVES.width} ${CURVES.height}`}
        role="img"
        aria-label={`${experiment.metric} by epoch for ${drawn.length} trials${pruned ? `, ${pruned} pruned` : ''}`}
      >
        <YAxis area={CURVES} scale={y} label={v => tick(v, 3)} />
        <XAxis area={CURVES} scale={x} name="epoch" />
        {drawn.length === 0 && (
          <text x={CURVES.width / 2} y={CURVES.height / 2} textAnchor="middle" className="jp-clusterlab-chart-empty">
            no epoch reported yet
          </text>
        )}
        {order.map(trial => {
          const best = isBest(experiment, trial);
          const color = trialColor(trial.trial);
          const points = trial.curve.map(([e, v]) => [x(e), y(v)] as [number, number]);
          const [endX, endY] = points[points.length - 1];
          return (
            <g
              key={trial.trial}
              className={`jp-clusterlab-curve jp-mod-${trial.status}${best ? ' jp-mod-best' : ''}`}
              data-trial={trial.trial}
              data-status={trial.status}
            >
              <title>{trialTitle(experiment, trial)}</title>
              {points.length > 1 && (
                <polyline
                  points={polyline(points)}
                  fill="none"
                  stroke={color}
                  strokeWidth={best ? 3.5 : 1.5}
                  strokeDasharray={DASH[trial.status]}
                  strokeLinejoin="round"
                />
              )}
              {trial.status === 'pruned' ? (
                <Cross x={endX} y={endY} color={color} />
              ) : (
                (points.length === 1 || best) && <circle cx={endX} cy={endY} r={best ? 4.5 : 3} fill={color} />
              )}
            </g>
          );
        })}
      </svg>
      <div className="jp-clusterlab-chart-legend jp-clusterlab-curves-legend">
        <span className="jp-clusterlab-chart-key">
          <Sample /> completed or running
        </span>
        <span className="jp-clusterlab-chart-key" data-legend="pruned">
          <Sample dash={DASH.pruned} cross /> pruned: stopped early ({pruned})
        </span>
        {ended > 0 && (
          <span className="jp-clusterlab-chart-key" data-legend="failed">
            <Sample dash={DASH.failed} /> failed or cancelled ({ended})
          </span>
        )}
        {experiment.best && (
          <span className="jp-clusterlab-chart-key" data-legend="best">
            <Sample width={3.5} dot /> best: trial {experiment.best.trial}
          </span>
        )}
      </div>
    </figure>
  );
}

/** The parameter's axis: log when it was searched on a log range, categories when its values are not numbers. */
function paramScale(spec: SearchSpec | undefined, values: any[]): { scale: IScale; label: (v: number) => string; position: (v: any) => number } {
  const range = xRange(SCATTER);
  // numbers: the values so far, else what was searched (a range, or listed numbers)
  const numeric =
    values.length > 0
      ? values.every(v => typeof v === 'number')
      : !!spec && (!Array.isArray(spec) || (spec.length > 0 && spec.every(v => typeof v === 'number')));
  if (!numeric) {
    const categories = Array.from(new Set((Array.isArray(spec) ? spec : []).concat(values).map(v => String(v))));
    const inset = (range[1] - range[0]) / (2 * Math.max(1, categories.length));
    const scale = linearScale([0, Math.max(1, categories.length - 1)], [range[0] + inset, range[1] - inset], categories.map((_, i) => i));
    return { scale, label: i => categories[i] ?? '', position: v => scale(categories.indexOf(String(v))) };
  }
  const listedValues = Array.isArray(spec) ? spec.filter(v => typeof v === 'number') : [];
  const bounds = spec && !Array.isArray(spec) ? [spec.min, spec.max] : listedValues;
  const all = [...values, ...bounds] as number[];
  // a log range, or listed values a decade or more apart (0.001, 0.003, 0.01)
  const positive = all.every(v => v > 0);
  const log = Array.isArray(spec) ? positive && Math.max(...all) / Math.min(...all) >= 10 : !!spec?.log;
  if (log && positive) {
    const scale = logScale([Math.min(...all), Math.max(...all)], range, 0.05);
    return { scale, label: v => tick(v), position: v => scale(v) };
  }
  const [low, high] = extent(all, 0.05);
  const listed = Array.isArray(spec) && spec.length <= 5 ? [...(spec as number[])].sort((a, b) => a - b) : undefined;
  const scale = linearScale([low, high], range, listed);
  return { scale, label: v => tick(v), position: v => scale(v) };
}

export function ParamScatter(props: { experiment: IExperiment; trials: ITrial[]; param: string }): JSX.Element {
  const { experiment, trials, param } = props;
  const spec = experiment.search[param];
  const rated = trials.filter(t => t.value !== null && param in t.params);
  const { scale: x, label, position } = paramScale(spec, rated.map(t => t.params[param]));
  const y = linearScale(extent(rated.map(t => t.value as number), 0.08), yRange(SCATTER));
  const log = x.log;
  return (
    <figure className="jp-clusterlab-experiment-chart jp-clusterlab-scatter" data-param={param}>
      <figcaption>
        <span className="jp-clusterlab-chart-title">
          {param}
          {log ? ' (log scale)' : ''}
        </span>
      </figcaption>
      <svg
        className="jp-clusterlab-chart-plot"
        data-chart={`param-${param}`}
        data-scale={log ? 'log' : 'linear'}
        viewBox={`0 0 ${SCATTER.width} ${SCATTER.height}`}
        role="img"
        aria-label={`${experiment.metric} against ${param}${log ? ' on a log scale' : ''}, ${rated.length} trials`}
      >
        <YAxis area={SCATTER} scale={y} label={v => tick(v, 3)} />
        <XAxis area={SCATTER} scale={x} label={label} />
        {rated.length === 0 && (
          <text x={SCATTER.width / 2} y={SCATTER.height / 2} textAnchor="middle" className="jp-clusterlab-chart-empty">
            no value yet
          </text>
        )}
        {rated.map(trial => {
          const cx = position(trial.params[param]);
          const cy = y(trial.value as number);
          const color = trialColor(trial.trial);
          const pruned = trial.status === 'pruned';
          return (
            <g key={trial.trial} data-trial={trial.trial} data-status={trial.status}>
              <title>{trialTitle(experiment, trial)}</title>
              {isBest(experiment, trial) && <circle cx={cx} cy={cy} r={8} fill="none" stroke="currentColor" strokeWidth={1.5} className="jp-clusterlab-best-ring" />}
              <circle cx={cx} cy={cy} r={4} fill={pruned ? 'none' : color} stroke={color} strokeWidth={pruned ? 1.5 : 0} />
            </g>
          );
        })}
      </svg>
    </figure>
  );
}

/** The scatters' shared key: what a filled dot, a ring and a circled dot are. */
export function ScatterLegend(props: { hasBest: boolean }): JSX.Element {
  return (
    <div className="jp-clusterlab-chart-legend">
      <span className="jp-clusterlab-chart-key">
        <svg className="jp-clusterlab-legend-sample" viewBox="0 0 10 10" width={10} height={10} aria-hidden="true">
          <circle cx={5} cy={5} r={4} fill="currentColor" />
        </svg>{' '}
        a trial's last value
      </span>
      <span className="jp-clusterlab-chart-key">
        <svg className="jp-clusterlab-legend-sample" viewBox="0 0 10 10" width={10} height={10} aria-hidden="true">
          <circle cx={5} cy={5} r={3.5} fill="none" stroke="currentColor" strokeWidth={1.5} />
        </svg>{' '}
        pruned (at an earlier epoch)
      </span>
      {props.hasBest && (
        <span className="jp-clusterlab-chart-key">
          <svg className="jp-clusterlab-legend-sample" viewBox="0 0 18 18" width={14} height={14} aria-hidden="true">
            <circle cx={9} cy={9} r={7.5} fill="none" stroke="currentColor" strokeWidth={1.5} />
            <circle cx={9} cy={9} r={4} fill="currentColor" />
          </svg>{' '}
          best
        </span>
      )}
    </div>
  );
}
