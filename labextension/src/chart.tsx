/**
 * A job's metrics over epochs, as small SVG charts: losses on one, accuracy-like
 * metrics (accuracy, mAP, R²) on another, since they have different scales.
 * Each has its own y axis and an epoch axis, with ticks, so a point can be read.
 */
import * as React from 'react';

import { IMetricPoint } from './api';

const WIDTH = 220;
const HEIGHT = 64;
const MARGIN = { left: 30, right: 8, top: 6, bottom: 14 };
const COLORS = ['#1565c0', '#c43e00', '#2e7d32', '#6a1b9a', '#b71c1c', '#00695c'];

interface IGroup {
  title: string;
  names: string[];
  /** accuracy-like metrics are drawn on 0..1 when they stay inside it */
  unitInterval: boolean;
}

function groups(names: string[]): IGroup[] {
  const loss = names.filter(n => n.includes('loss'));
  const quality = names.filter(
    n => !n.includes('loss') && (n.includes('acc') || n.toLowerCase().includes('map') || n.includes('r2'))
  );
  return [
    { title: 'loss', names: loss, unitInterval: false },
    { title: quality.some(n => n.includes('acc')) ? 'accuracy' : 'quality', names: quality, unitInterval: true }
  ].filter(g => g.names.length > 0);
}

/** A short label for a tick: 2 significant digits, no trailing zeros. */
function tick(value: number, digits = 2): string {
  if (value === 0) {
    return '0';
  }
  return Math.abs(value) >= 1000 ? value.toExponential(1) : String(Number(value.toPrecision(digits)));
}

function SmallChart(props: { group: IGroup; points: IMetricPoint[]; colorOf: (name: string) => string }): JSX.Element {
  const { group, points, colorOf } = props;
  const values = points.flatMap(p => group.names.filter(n => n in p.metrics).map(n => p.metrics[n]));
  let low = Math.min(...values);
  let high = Math.max(...values);
  if (group.unitInterval && low >= 0 && high <= 1) {
    [low, high] = [0, 1];
  } else {
    low = Math.min(0, low); // losses from zero, so a fall reads as a fall
    high = high > low ? high : low + 1;
  }
  const epochs = Math.max(1, points[points.length - 1].epochs || 0, ...points.map(p => p.epoch));
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const x = (epoch: number) => MARGIN.left + (epochs <= 1 ? plotWidth / 2 : ((epoch - 1) / (epochs - 1)) * plotWidth);
  const y = (value: number) => MARGIN.top + (1 - (value - low) / (high - low)) * plotHeight;
  const xTicks = epochs <= 1 ? [1] : Array.from(new Set([1, Math.round((1 + epochs) / 2), epochs]));
  const yTicks = [low, (low + high) / 2, high];
  return (
    <svg
      className="jp-clusterlab-chart-plot"
      data-chart={group.title}
      viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
      role="img"
      aria-label={`${group.names.join(', ')} by epoch`}
    >
      <g className="jp-clusterlab-chart-axis" data-axis="y">
        {yTicks.map(v => (
          <g key={`y${v}`}>
            <line x1={MARGIN.left - 3} x2={WIDTH - MARGIN.right} y1={y(v)} y2={y(v)} className="jp-clusterlab-chart-grid" />
            <text x={MARGIN.left - 5} y={y(v)} dy="0.32em" textAnchor="end">
              {tick(v)}
            </text>
          </g>
        ))}
      </g>
      <g className="jp-clusterlab-chart-axis" data-axis="x">
        <line x1={MARGIN.left} x2={WIDTH - MARGIN.right} y1={HEIGHT - MARGIN.bottom} y2={HEIGHT - MARGIN.bottom} />
        {xTicks.map((epoch, i) => {
          // the first and last ticks say what the axis is, inside the frame
          const first = i === 0;
          const last = i === xTicks.length - 1 && xTicks.length > 1;
          return (
            <text
              key={`x${epoch}`}
              x={x(epoch)}
              y={HEIGHT - 3}
              textAnchor={xTicks.length === 1 ? 'middle' : first ? 'start' : last ? 'end' : 'middle'}
            >
              {first ? `epoch ${epoch}` : epoch}
            </text>
          );
        })}
      </g>
      {group.names.map(name => {
        const own = points.filter(p => name in p.metrics);
        if (own.length === 1) {
          // one epoch so far: a dot with its value, since a line needs two
          const [point] = own;
          return (
            <g key={name} data-metric={name}>
              <circle cx={x(point.epoch)} cy={y(point.metrics[name])} r={3} fill={colorOf(name)} />
            </g>
          );
        }
        const line = own.map(p => `${x(p.epoch).toFixed(1)},${y(p.metrics[name]).toFixed(1)}`).join(' ');
        return <polyline key={name} data-metric={name} points={line} fill="none" stroke={colorOf(name)} strokeWidth={1.5} />;
      })}
    </svg>
  );
}

export function MetricsChart(props: { points: IMetricPoint[] }): JSX.Element | null {
  const { points } = props;
  if (points.length === 0) {
    return null;
  }
  const names = Array.from(new Set(points.flatMap(p => Object.keys(p.metrics))));
  const charted = groups(names);
  if (charted.length === 0) {
    return null;
  }
  const order = charted.flatMap(g => g.names);
  const colorOf = (name: string) => COLORS[order.indexOf(name) % COLORS.length];
  const latest = (name: string) => [...points].reverse().find(p => name in p.metrics)?.metrics[name];
  return (
    <div className="jp-clusterlab-chart">
      {charted.map(group => (
        <figure key={group.title} className="jp-clusterlab-chart-group">
          <figcaption className="jp-clusterlab-chart-legend">
            {group.names.map(name => (
              <span key={name} className="jp-clusterlab-chart-key">
                <span className="jp-clusterlab-chart-swatch" style={{ background: colorOf(name) }} />
                {name} <b>{tick(latest(name) ?? NaN, 3)}</b>
              </span>
            ))}
          </figcaption>
          <SmallChart group={group} points={points} colorOf={colorOf} />
        </figure>
      ))}
    </div>
  );
}
