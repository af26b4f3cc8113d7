/**
 * ClusterLab in JupyterLab: the "Accelerated AI" launcher section (a tile per
 * template), template forms, the Jobs sidebar with live logs, metrics and
 * TensorBoard, and the GPU status-bar item. Everything talks to the server
 * extension's REST API (api.ts); each user action is a command.
 */
import { ILabShell, ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget, showErrorMessage } from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { FileBrowser, FilterFileBrowserModel } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { folderIcon } from '@jupyterlab/ui-components';

import { IJob, ITemplate, requestAPI } from './api';
import { GPUStatusItem } from './gpuStatus';
import { iconFor } from './icons';
import { CommandIDs, JobsPanel } from './jobsPanel';
import { JobsModel } from './jobsModel';
import { LogView } from './logView';
import { openTensorBoard } from './tensorboard';
import { formOptions, TemplateFormWidget } from './templateForm';

const PLUGIN_ID = '@clusterlab/labextension:plugin';
const CATEGORY = 'Accelerated AI';

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Accelerated AI templates, their forms, the Jobs panel and the embedded TensorBoard.',
  autoStart: true,
  requires: [ILabShell, IDocumentManager],
  optional: [ILauncher, ICommandPalette, ISettingRegistry, ILayoutRestorer, IStatusBar],
  activate: async (
    app: JupyterFrontEnd,
    shell: ILabShell,
    docManager: IDocumentManager,
    launcher: ILauncher | null,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null,
    statusBar: IStatusBar | null
  ) => {
    const { commands } = app;
    const templates = new Map<string, ITemplate>(); // filled below, for the launcher and the job cards
    const model = new JobsModel(templates);
    const panel = new JobsPanel(model, commands);
    shell.add(panel, 'left', { rank: 600 });
    restorer?.add(panel, panel.id);

    if (settingRegistry) {
      try {
        const settings = await settingRegistry.load(PLUGIN_ID);
        const apply = () => (model.interval = settings.get('refreshInterval').composite as number);
        apply();
        settings.changed.connect(apply);
      } catch (error) {
        console.warn('ClusterLab: settings could not be loaded; refreshing every 5 s', error);
      }
    }

    const jobById = (id: string): IJob | undefined => model.jobs.find(job => job.id === id);
    const addToMain = (widget: MainAreaWidget | LogView) => {
      shell.add(widget, 'main');
      shell.activateById(widget.id);
    };

    const openForm = async (templateId: string, rerun: IJob | null) => {
      try {
        const options = await formOptions(templateId, rerun);
        const content = new TemplateFormWidget({
          ...options,
          rerunOf: rerun?.id ?? null,
          onSubmitted: () => {
            void model.refresh();
            shell.activateById(panel.id);
          }
        });
        const widget = new MainAreaWidget({ content });
        widget.id = `clusterlab-form-${templateId}-${Date.now()}`;
        widget.title.label = rerun ? `Rerun: ${rerun.name}` : options.template.name;
        widget.title.icon = iconFor(options.template);
        widget.title.closable = true;
        addToMain(widget);
      } catch (error) {
        void showErrorMessage('ClusterLab: cannot open the form', String((error as Error).message ?? error));
      }
    };

    commands.addCommand(CommandIDs.openTemplate, {
      label: args => templates.get(args.id as string)?.name ?? 'Open a ClusterLab template',
      caption: args => templates.get(args.id as string)?.description ?? '',
      icon: args => iconFor(templates.get(args.id as string)),
      execute: args => openForm(args.id as string, null)
    });

    commands.addCommand(CommandIDs.openJobs, {
      label: 'Jobs',
      caption: 'Show the ClusterLab jobs panel',
      execute: () => {
        shell.activateById(panel.id);
        void model.refresh();
      }
    });

    commands.addCommand(CommandIDs.openLog, {
      label: 'Show the job log',
      execute: args => {
        const id = args.id as string;
        const existing = Array.from(shell.widgets('main')).find(w => w.id === `clusterlab-log-${id}`);
        if (existing) {
          shell.activateById(existing.id);
          return;
        }
        addToMain(new LogView(id, jobById(id)?.name ?? id));
      }
    });

    commands.addCommand(CommandIDs.cancel, {
      label: 'Cancel the job',
      execute: async args => {
        try {
          await model.cancel(args.id as string);
        } catch (error) {
          void showErrorMessage('ClusterLab: cannot cancel', String((error as Error).message ?? error));
        }
      }
    });

    commands.addCommand(CommandIDs.rerun, {
      label: 'Run the job again with changed parameters',
      execute: async args => {
        const job = jobById(args.id as string);
        if (job) {
          await openForm(job.template, job);
        }
      }
    });

    // A job's output opens in a file browser of its own, in the main area, kept
    // to that folder: the main file browser (which sets where new launchers,
    // notebooks and terminals start) stays where the user left it. It is not
    // made by the file browser factory, whose tracker would make it "current".
    commands.addCommand(CommandIDs.openOutput, {
      label: 'Open the job output folder',
      execute: async args => {
        const job = jobById(args.id as string);
        if (!job?.output_path) {
          void showErrorMessage(
            'ClusterLab',
            `The output of ${job?.name ?? args.id} is outside this server's file browser: ${job?.folder}/output`
          );
          return;
        }
        const id = `clusterlab-output-${job.id}`;
        if (!Array.from(shell.widgets('main')).some(w => w.id === id)) {
          const model = new FilterFileBrowserModel({ manager: docManager, root: job.output_path, refreshInterval: 5000 });
          const browser = new FileBrowser({ id, model, restore: false });
          browser.addClass('jp-clusterlab-output');
          browser.title.label = `Output: ${job.name}`;
          browser.title.caption = `${job.name}: ${job.output_path}`;
          browser.title.icon = folderIcon;
          browser.title.closable = true;
          const where = document.createElement('div');
          where.className = 'jp-clusterlab-output-where';
          where.textContent = `Output of job ${job.name}: ${job.output_path} (in your workspace)`;
          browser.node.insertBefore(where, browser.node.firstChild);
          shell.add(browser, 'main');
          await model.cd(`/${job.output_path}`);
        }
        shell.activateById(id);
      }
    });

    commands.addCommand(CommandIDs.openTensorBoard, {
      label: 'Open TensorBoard',
      execute: async args => {
        const ids = (args.jobs as string[]) ?? [];
        try {
          const names = ids.map(id => jobById(id)?.name ?? id);
          addToMain(await openTensorBoard(ids, names));
        } catch (error) {
          void showErrorMessage('ClusterLab: cannot open TensorBoard', String((error as Error).message ?? error));
        }
      }
    });

    palette?.addItem({ command: CommandIDs.openJobs, category: 'ClusterLab' });

    if (statusBar) {
      statusBar.registerStatusItem('clusterlab:gpu-status', {
        item: new GPUStatusItem(),
        align: 'left',
        rank: 10
      });
    }

    try {
      const answer = await requestAPI<{ templates: ITemplate[] }>('templates');
      answer.templates.forEach((template, rank) => {
        templates.set(template.id, template);
        launcher?.add({ command: CommandIDs.openTemplate, args: { id: template.id }, category: CATEGORY, rank });
        palette?.addItem({ command: CommandIDs.openTemplate, args: { id: template.id }, category: 'ClusterLab templates' });
      });
    } catch (error) {
      console.error('ClusterLab: the templates could not be loaded', error);
    }
  }
};

export default plugin;
