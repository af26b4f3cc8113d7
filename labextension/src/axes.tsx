/**
 * What every ClusterLab chart shares: its plot area, linear and log scales,
 * short tick labels, and the two axes drawn in SVG with their grid lines.
 * chart.tsx (a job's small charts) and experimentCharts.tsx (an experiment's
 * learning curves and parameters against the metric) draw on these.
 */
import * as React from 'react';

export interface IPlotArea {
  width: number;
  height: number;
  margin: { left: number; right: number; top: number; bottom: number };
}

/** Line colours, readable on light and dark themes; the first six are a job's metrics'. */
export const COLORS = ['#1565c0', '#c43e00', '#2e7d32', '#6a1b9a', '#b71c1c', '#00695c', '#8d6e00', '#ad1457', '#37474f', '#4e6cef'];

/** A value -> a pixel, with the ticks worth labelling. */
export interface IScale {
  (value: number): number;
  ticks: number[];
  log: boolean;
}

/** The x pixels of the area's inside: [left, right]. */
export function xRange(area: IPlotArea): [number, number] {
  return [area.margin.left, area.width - area.margin.right];
}

/** The y pixels of the area's inside, bottom first: [bottom, top] (larger values higher up). */
export function yRange(area: IPlotArea): [number, number] {
  return [area.height - area.margin.bottom, area.margin.top];
}

/** ``ticks`` defaults to the ends and the middle; a domain of one value maps to the middle of the range. */
export function linearScale(domain: [number, number], range: [number, number], ticks?: number[]): IScale {
  const [low, high] = domain;
  const [from, to] = range;
  const scale = ((value: number) =>
    high === low ? (from + to) / 2 : from + ((value - low) / (high - low)) * (to - from)) as IScale;
  scale.ticks = ticks ?? (high === low ? [low] : [low, (low + high) / 2, high]);
  scale.log = false;
  return scale;
}

/** For values > 0 spread over decades (a learning rate): the powers of ten inside, else the ends and their geometric middle. */
export function logScale(domain: [number, number], range: [number, number], pad = 0): IScale {
  const [first, last] = domain.map(v => Math.log10(v));
  const d = (last - first) * pad;
  const [low, high] = [first - d, last + d];
  const inner = linearScale([low, high], range);
  const scale = ((value: number) => inner(Math.log10(value))) as IScale;
  const decades: number[] = [];
  for (let e = Math.ceil(low - 1e-9); e <= Math.floor(high + 1e-9); e++) {
    decades.push(10 ** e);
  }
  scale.ticks =
    decades.length >= 2 ? decades : last === first ? [10 ** first] : [10 ** first, 10 ** ((first + last) / 2), 10 ** last];
  scale.log = true;
  return scale;
}

/**
 * [low, high] of the values, widened by ``pad`` of its span each side (a span of 0 gets ±1 or ±10 %);
 * values that all lie in 0..1 (accuracies) are not widened past it.
 */
export function extent(values: number[], pad = 0): [number, number] {
  const finite = values.filter(v => Number.isFinite(v));
  if (finite.length === 0) {
    return [0, 1];
  }
  const low = Math.min(...finite);
  const high = Math.max(...finite);
  if (high === low) {
    const d = low === 0 ? 1 : Math.abs(low) * 0.1;
    return [low - d, high + d];
  }
  const d = (high - low) * pad;
  const unit = low >= 0 && high <= 1;
  return unit ? [Math.max(0, low - d), Math.min(1, high + d)] : [low - d, high + d];
}

/** 1, the middle and the last epoch. */
export function epochTicks(epochs: number): number[] {
  return epochs <= 1 ? [1] : Array.from(new Set([1, Math.round((1 + epochs) / 2), epochs]));
}

/** SVG polyline points from [x, y] pixels. */
export function polyline(points: [number, number][]): string {
  return points.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' ');
}

/** A short label for a tick: 2 significant digits, no trailing zeros. */
export function tick(value: number, digits = 2): string {
  if (value === 0) {
    return '0';
  }
  const rounded = Number(value.toPrecision(digits));
  const size = Math.abs(rounded);
  return size >= 1000 || size < 1e-3 ? rounded.toExponential() : String(rounded);
}

/** About how wide a tick label of ``chars`` characters is, at the charts' 9-10 px font. */
const CHAR_WIDTH = 6;

/** The scale's ticks less those whose labels would touch the one before; the first and the last stay. */
function spaced(scale: IScale, chars: (value: number) => number): number[] {
  const ticks = scale.ticks;
  const clear = (a: number, b: number) => Math.abs(scale(b) - scale(a)) >= ((chars(a) + chars(b)) * CHAR_WIDTH) / 2 + 4;
  const kept: number[] = [];
  ticks.forEach((v, i) => {
    if (kept.length === 0) {
      kept.push(v);
    } else if (i === ticks.length - 1) {
      while (kept.length > 1 && !clear(kept[kept.length - 1], v)) {
        kept.pop();
      }
      kept.push(v);
    } else if (clear(kept[kept.length - 1], v)) {
      kept.push(v);
    }
  });
  return kept;
}

/** Grid lines across the area at the scale's ticks, labelled on the left. */
export function YAxis(props: { area: IPlotArea; scale: IScale; label?: (value: number) => string }): JSX.Element {
  const { area, scale } = props;
  const label = props.label ?? ((v: number) => tick(v));
  const [left, right] = xRange(area);
  return (
    <g className="jp-clusterlab-chart-axis" data-axis="y">
      {scale.ticks.map(v => (
        <g key={`y${v}`}>
          <line x1={left - 3} x2={right} y1={scale(v)} y2={scale(v)} className="jp-clusterlab-chart-grid" />
          <text x={left - 5} y={scale(v)} dy="0.32em" textAnchor="end">
            {label(v)}
          </text>
        </g>
      ))}
    </g>
  );
}

/**
 * The base line with the scale's ticks under it. The first and last labels sit
 * inside the frame; with a ``name`` the first says what the axis is ("epoch 1").
 */
export function XAxis(props: {
  area: IPlotArea;
  scale: IScale;
  name?: string;
  label?: (value: number) => string;
}): JSX.Element {
  const { area, scale, name } = props;
  const label = props.label ?? ((v: number) => tick(v));
  const [left, right] = xRange(area);
  const bottom = area.height - area.margin.bottom;
  const ticks = spaced(scale, v => (v === scale.ticks[0] && name ? `${name} ${label(v)}` : label(v)).length);
  return (
    <g className="jp-clusterlab-chart-axis" data-axis="x">
      <line x1={left} x2={right} y1={bottom} y2={bottom} />
      {ticks.map((v, i) => {
        const first = i === 0;
        const last = i === ticks.length - 1 && ticks.length > 1;
        return (
          <g key={`x${v}`}>
            <line x1={scale(v)} x2={scale(v)} y1={bottom} y2={bottom + 2} />
            <text x={scale(v)} y={area.height - 3} textAnchor={ticks.length === 1 ? 'middle' : first ? 'start' : last ? 'end' : 'middle'}>
              {first && name ? `${name} ${label(v)}` : label(v)}
            </text>
          </g>
        );
      })}
    </g>
  );
}
