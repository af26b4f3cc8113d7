import { PageConfig } from '@jupyterlab/coreutils';

/**
 * How sizes, counts, times and digests read in the panels: "12.3 MB",
 * "2,000 files", "2026-05-01 14:03", "1a2b3c4d".
 */

/** Decimal units, as disks are sold and `du --si` prints them. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) {
    return '';
  }
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${value.toFixed(digits).replace(/\.0+$|(\.\d*[1-9])0+$/, '$1')} ${units[unit]}`;
}

/** "1 trial", "2,000 trials": a count and its noun, plural unless one. */
export function counted(count: number, noun: string): string {
  return `${count.toLocaleString('en-US')} ${noun}${count === 1 ? '' : 's'}`;
}

/** "1 file", "2,000 files" */
export function formatFiles(count: number): string {
  return counted(count, 'file');
}

/** An ISO time in the browser's zone, to the minute: "2026-05-01 14:03". */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) {
    return '';
  }
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) {
    return iso;
  }
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** "sha256:1a2b3c4d…" -> "1a2b3c4d": enough to tell versions apart at a glance. */
export function shortDigest(digest: string | null | undefined): string {
  return (digest ?? '').replace(/^sha256:/, '').slice(0, 8);
}

/** The dataset name rule (service.check_name): a folder's name made to fit it. */
export function datasetNameFor(folder: string): string {
  const base = folder.replace(/\/+$/, '').split('/').pop() ?? '';
  const name = base.replace(/[^A-Za-z0-9_]+/g, '_').replace(/^_+|_+$/g, '').slice(0, 100);
  return name || 'dataset';
}

/**
 * A folder as short as it reads clearly in a sidebar: relative to the server's root when it is
 * under it ("demo/shapes"), else its last parts ("…/workspace/demo/shapes"); the whole path goes
 * in a tooltip. (The root is "~/…" when under the home, which the browser cannot expand.)
 */
export function shortPath(path: string, keep = 3): string {
  const root = (PageConfig.getOption('serverRoot') || '').replace(/\/+$/, '');
  if (root.startsWith('/') && path.startsWith(`${root}/`)) {
    return path.slice(root.length + 1);
  }
  const parts = path.split('/').filter(part => part !== '');
  return path.startsWith('/') && parts.length > keep ? `…/${parts.slice(-keep).join('/')}` : path;
}

/** "under a minute", "3 min", "1 h 2 min", "2 days": how long until a time. */
function durationInWords(seconds: number): string {
  if (seconds < 60) {
    return 'under a minute';
  }
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) {
    return `${minutes} min`;
  }
  const hours = Math.floor(minutes / 60);
  if (hours < 24) {
    return minutes % 60 ? `${hours} h ${minutes % 60} min` : `${hours} h`;
  }
  const days = Math.round(hours / 24);
  return `${days} day${days === 1 ? '' : 's'}`;
}

/**
 * A time to come in the browser's zone, and how long until it: "14:05 (in 3 min)",
 * "Tue 2 Jun 09:00 (in 2 days)" on another day, "14:05 (any moment now)" once it is due
 * (a scheduler's estimate that has not come true yet). The hub's spawn page says it alike.
 */
export function startInWords(iso: string, now = Date.now()): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) {
    return iso;
  }
  const pad = (n: number) => String(n).padStart(2, '0');
  let clock = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  if (date.toDateString() !== new Date(now).toDateString()) {
    const day = date.toLocaleDateString('en-GB', { weekday: 'short', day: 'numeric', month: 'short' }).replace(',', '');
    clock = `${day} ${clock}`;
  }
  const seconds = (date.getTime() - now) / 1000;
  return seconds > 0 ? `${clock} (in ${durationInWords(seconds)})` : `${clock} (any moment now)`;
}
