/**
 * A labelling's Label Studio page in a main-area panel, "Label: <name>". The
 * server starts the user's Label Studio when it is not running (10–60 s the
 * first time) and answers its page as a browser path through the user's own
 * server; until then the panel shows JupyterLab's spinner.
 */
import { IFrame, MainAreaWidget } from '@jupyterlab/apputils';

import { ILabelling } from './api';
import { imageIcon } from './icons';

export function labellingPanelId(id: string): string {
  return `clusterlab-label-${id}`;
}

/**
 * The panel for ``labelling``, shown at once; its page once ``opened`` answers. When it fails the
 * panel closes (the caller says why where the user asked).
 */
export function labellingPanel(labelling: ILabelling, opened: Promise<ILabelling>): MainAreaWidget<IFrame> {
  // scripts: Label Studio is an app; same origin: the proxy needs the server's cookie; forms: its
  // login and settings; popups and modals: its "open in a new tab" and its confirmations
  const frame = new IFrame({
    sandbox: ['allow-scripts', 'allow-same-origin', 'allow-forms', 'allow-popups', 'allow-modals', 'allow-downloads']
  });
  frame.addClass('jp-clusterlab-labelling-frame');
  frame.node.querySelector('iframe')?.setAttribute('title', `Label Studio: ${labelling.name}`);
  const reveal = opened.then(
    answer => {
      frame.url = answer.url ?? '';
    },
    () => undefined // the caller closes the panel and shows the error
  );
  const widget = new MainAreaWidget({ content: frame, reveal });
  widget.id = labellingPanelId(labelling.id);
  widget.addClass('jp-clusterlab-labelling-panel');
  widget.title.label = `Label: ${labelling.name}`;
  widget.title.caption = `${labelling.name} in Label Studio: ${labelling.kind}, ${labelling.classes.join(', ')}`;
  widget.title.icon = imageIcon;
  widget.title.closable = true;
  opened.catch(() => widget.dispose());
  return widget;
}
