/**
 * A small chart of a job's metrics over epochs: every loss on the left scale,
 * every accuracy-like metric (0..1) on the right, as SVG polylines.
 */
import * as React from 'react';

import { IMetricPoint } from './api';

const WIDTH = 220;
const HEIGHT = 60;
const COLORS = ['#1976d2', '#e65100', '#2e7d32', '#6a1b9a', '#c62828', '#00838f'];

function isLoss(name: string): boolean {
  return name.includes('loss');
}

export function MetricsChart(props: { points: IMetricPoint[] }): JSX.Element | null {
  const { points } = props;
  if (points.length === 0) {
    return null;
  }
  const names = Array.from(new Set(points.flatMap(p => Object.keys(p.metrics)))).filter(
    n => isLoss(n) || n.includes('acc') || n.toLowerCase().includes('map') || n.includes('r2')
  );
  const epochs = points[points.length - 1].epochs || points.length;
  const maxLoss = Math.max(
    1e-9,
    ...points.flatMap(p => Object.entries(p.metrics).filter(([n]) => isLoss(n)).map(([, v]) => v))
  );
  const x = (epoch: number) => (epochs <= 1 ? WIDTH / 2 : ((epoch - 1) / (epochs - 1)) * (WIDTH - 4) + 2);
  const y = (name: string, value: number) => {
    const scaled = isLoss(name) ? value / maxLoss : Math.min(1, Math.max(0, value));
    return HEIGHT - 2 - scaled * (HEIGHT - 4);
  };
  return (
    <div className="jp-clusterlab-chart">
      <svg width={WIDTH} height={HEIGHT} viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label="metrics over epochs">
        <rect x={0} y={0} width={WIDTH} height={HEIGHT} className="jp-clusterlab-chart-frame" />
        {names.map((name, i) => {
          const line = points
            .filter(p => name in p.metrics)
            .map(p => `${x(p.epoch).toFixed(1)},${y(name, p.metrics[name]).toFixed(1)}`)
            .join(' ');
          const color = COLORS[i % COLORS.length];
          const only = points.filter(p => name in p.metrics);
          if (only.length === 1) {
            // one epoch so far: a dot, since a line needs two
            return (
              <circle
                key={name}
                data-metric={name}
                cx={x(only[0].epoch)}
                cy={y(name, only[0].metrics[name])}
                r={2.5}
                fill={color}
              />
            );
          }
          return (
            <polyline key={name} data-metric={name} points={line} fill="none" stroke={color} strokeWidth={1.5} />
          );
        })}
      </svg>
      <div className="jp-clusterlab-chart-legend">
        {names.map((name, i) => {
          const last = [...points].reverse().find(p => name in p.metrics);
          return (
            <span key={name} style={{ color: COLORS[i % COLORS.length] }}>
              {name} {last ? last.metrics[name].toFixed(3) : ''}
            </span>
          );
        })}
      </div>
    </div>
  );
}
