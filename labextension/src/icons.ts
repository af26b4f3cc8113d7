/**
 * Icons: one per template (its `icon` field, else its category), the Jobs,
 * Experiments and Datasets panels', and TensorBoard's for the job action. JupyterLab's own notebook and
 * Python icons for those templates, so a tile looks like what it makes.
 */
import { LabIcon, notebookIcon, pythonIcon } from '@jupyterlab/ui-components';

function icon(name: string, body: string): LabIcon {
  return new LabIcon({
    name: `clusterlab:${name}`,
    svgstr: `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16" height="16"><g class="jp-icon3" fill="#616161">${body}</g></svg>`
  });
}

export const imageIcon = icon(
  'image-classification',
  '<path d="M4 4h16a1 1 0 0 1 1 1v14a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1V5a1 1 0 0 1 1-1zm1 2v10l4-4 3 3 4-5 3 4V6H5zm3 1.5a1.5 1.5 0 1 1 0 3 1.5 1.5 0 0 1 0-3z"/>'
);
export const detectionIcon = icon(
  'object-detection',
  '<path d="M3 3h6v2H5v4H3V3zm12 0h6v6h-2V5h-4V3zM3 15h2v4h4v2H3v-6zm16 0h2v6h-6v-2h4v-4zM8 8h8v8H8V8z"/>'
);
export const tabularIcon = icon(
  'tabular',
  '<path d="M3 4h18v16H3V4zm2 2v3h4V6H5zm6 0v3h8V6h-8zM5 11v3h4v-3H5zm6 0v3h8v-3h-8zm-6 5v2h4v-2H5zm6 0v2h8v-2h-8z"/>'
);
export const scriptIcon = icon(
  'script',
  '<path d="M8.6 16.6 4 12l4.6-4.6L10 8.8 6.8 12l3.2 3.2-1.4 1.4zm6.8 0L14 15.2l3.2-3.2L14 8.8l1.4-1.4L20 12l-4.6 4.6z"/>'
);
export const jobsIcon = icon(
  'jobs',
  '<path d="M4 5h16v2H4V5zm0 6h10v2H4v-2zm0 6h16v2H4v-2zm13-7 4 2-4 2v-4z"/>'
);
/** a flask: an experiment (many trials of one template) */
export const experimentsIcon = icon(
  'experiments',
  '<path fill-rule="evenodd" d="M8.5 2.5h7v2h-1.3v5l5.3 8.6A1.9 1.9 0 0 1 17.9 21H6.1a1.9 1.9 0 0 1-1.6-2.9l5.3-8.6v-5H8.5v-2zM11.2 4.5v5.6l-2.7 4.5h7l-2.7-4.5V4.5z"/>'
);
/** a stack of disks: datasets, frozen in versions */
export const datasetsIcon = icon(
  'datasets',
  '<path fill-rule="evenodd" d="M12 2.5c4.4 0 8 1.4 8 3.3v12.4c0 1.9-3.6 3.3-8 3.3s-8-1.4-8-3.3V5.8c0-1.9 3.6-3.3 8-3.3zM6 8.4v3.1c1.2.8 3.4 1.3 6 1.3s4.8-.5 6-1.3V8.4c-1.5.7-3.6 1.1-6 1.1s-4.5-.4-6-1.1zm0 5.6v3.9c.4.6 2.6 1.6 6 1.6s5.6-1 6-1.6V14c-1.5.7-3.6 1.1-6 1.1S7.5 14.7 6 14zM12 4.5c-3.6 0-5.8 1-6 1.4.2.4 2.4 1.6 6 1.6s5.8-1.2 6-1.6c-.2-.4-2.4-1.4-6-1.4z"/>'
);
/** a folder of linked nodes: a project (jobs, their inputs and outputs) */
export const projectIcon = icon(
  'project',
  '<path d="M6 3a3 3 0 0 1 1 5.8v2.2h10V8.8a3 3 0 1 1 2 0V13H13v2.2a3 3 0 1 1-2 0V13H7v0H5V8.8A3 3 0 0 1 6 3zm0 2a1 1 0 1 0 0 2 1 1 0 0 0 0-2zm12 0a1 1 0 1 0 0 2 1 1 0 0 0 0-2zm-6 12a1 1 0 1 0 0 2 1 1 0 0 0 0-2z"/>'
);
export const tensorBoardIcon = icon(
  'tensorboard',
  '<path d="M3 3h2v16h16v2H3V3zm4 12.6 4.3-5.2 3 2.6L19.4 7l1.5 1.3-6.4 7.6-3-2.6-3 3.6L7 15.6z"/>'
);
export const logIcon = icon(
  'log',
  '<path d="M5 3h10l4 4v14H5V3zm2 2v14h10V8h-3V5H7zm2 5h6v1.6H9V10zm0 3h6v1.6H9V13zm0 3h4v1.6H9V16z"/>'
);

const BY_ICON: { [name: string]: LabIcon } = {
  image: imageIcon,
  'object-detection': detectionIcon,
  table: tabularIcon,
  notebook: notebookIcon,
  python: pythonIcon
};

const BY_CATEGORY: { [prefix: string]: LabIcon } = {
  image: imageIcon,
  object: detectionIcon,
  tabular: tabularIcon
};

export function iconFor(template: { icon?: string; category?: string } | undefined): LabIcon {
  if (template?.icon && BY_ICON[template.icon]) {
    return BY_ICON[template.icon];
  }
  const prefix = Object.keys(BY_CATEGORY).find(p => (template?.category ?? '').startsWith(p));
  return prefix ? BY_CATEGORY[prefix] : scriptIcon;
}

/** three steps joined, as the AI Studio's stepper draws a chain from images to a published model */
export const studioIcon = icon(
  'studio',
  '<path d="M4 11h16v2H4z"/><circle cx="4.5" cy="12" r="2.5"/><circle cx="12" cy="12" r="3"/>' +
    '<circle cx="19.5" cy="12" r="2.5"/>'
);
