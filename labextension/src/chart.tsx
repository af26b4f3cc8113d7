/**
 * A job's metrics over epochs, as small SVG charts: losses on one, accuracy-like
 * metrics (accuracy, mAP, R²) on another, since they have different scales.
 * Each has its own y axis and an epoch axis, with ticks, so a point can be read.
 */
import * as React from 'react';

import { IMetricPoint } from './api';
import { COLORS, epochTicks, IPlotArea, linearScale, polyline, tick, XAxis, xRange, YAxis, yRange } from './axes';

const AREA: IPlotArea = { width: 220, height: 64, margin: { left: 30, right: 8, top: 6, bottom: 14 } };

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
  const x = linearScale([1, epochs], xRange(AREA), epochTicks(epochs));
  const y = linearScale([low, high], yRange(AREA));
  return (
    <svg
      className="jp-clusterlab-chart-plot"
      data-chart={group.title}
      viewBox={`0 0 ${AREA.width} ${AREA.height}`}
      role="img"
      aria-label={`${group.names.join(', ')} by epoch`}
    >
      <YAxis area={AREA} scale={y} />
      <XAxis area={AREA} scale={x} name="epoch" />
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
        const line = polyline(own.map(p => [x(p.epoch), y(p.metrics[name])]));
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
