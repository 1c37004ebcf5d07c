/**
 * jupyter-execution-broker: the JupyterLab side of the Execution Broker.
 *
 * One plugin: the sidebar (brokers, offers, my sessions, my batches), the "Run this
 * notebook…" command (notebook toolbar, command palette), and the notifications. Everything
 * it knows comes from the server's /eb/ handlers (eb_labextension), which hold the broker
 * credentials. See docs/labextension.md.
 */

import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Dialog, ICommandPalette, Notification, showDialog } from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';

import { RunDialogBody, RunFields } from './dialog';
import { failingCellIndex, ICellInfo } from './failing';
import { EBModel } from './model';
import { IToast } from './notify';
import { EBSidebar } from './sidebar';
import { DEFAULT_SETTINGS, ISettings } from './types';

const PLUGIN_ID = 'jupyter-execution-broker:plugin';

export const CommandIDs = {
  runNotebook: 'eb:run-notebook',
  showSidebar: 'eb:show-sidebar',
  refresh: 'eb:refresh'
};

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16" height="16">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm0 2a8 8 0 1 1 0 16 8 8 0 0 1 0-16z"/>
    <path d="M11 6h2v5.6l3.7 2.2-1 1.7L11 12.7z"/>
  </g>
</svg>`;

export const ebIcon = new LabIcon({ name: 'jupyter-execution-broker:icon', svgstr: ICON_SVG });

/** How long a toast stays: reminders, links and failures until dismissed. */
function autoClose(toast: IToast): number | false {
  return toast.kind === 'soon' || toast.kind === 'available' || toast.type === 'error'
    ? false
    : 8000;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Execution Broker: offers, sessions and batches, with notifications',
  autoStart: true,
  optional: [ICommandPalette, INotebookTracker, IDocumentManager, ISettingRegistry, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    tracker: INotebookTracker | null,
    docManager: IDocumentManager | null,
    settingRegistry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null
  ) => {
    const model = new EBModel({ ...DEFAULT_SETTINGS });

    const open = async (path: string, cell?: number): Promise<void> => {
      const widget = docManager
        ? docManager.openOrReveal(path)
        : await app.commands.execute('docmanager:open', { path });
      if (cell === undefined || !(widget instanceof NotebookPanel)) {
        return;
      }
      await widget.context.ready;
      await widget.revealed;
      const notebook = widget.content;
      const cells: ICellInfo[] = [];
      const list = notebook.model?.cells;
      for (let i = 0; list && i < list.length; i++) {
        const c = list.get(i);
        const tags = c.getMetadata('tags');
        cells.push({ tags: Array.isArray(tags) ? tags.map(String) : [], source: c.sharedModel.getSource() });
      }
      notebook.activeCellIndex = failingCellIndex(cells, cell) ?? cell;
      if (notebook.activeCell) {
        await notebook.scrollToCell(notebook.activeCell, 'center');
      }
    };

    const sidebar = new EBSidebar(model, {
      runNotebook: () => void app.commands.execute(CommandIDs.runNotebook),
      canRunNotebook: () => !!tracker?.currentWidget,
      open: (path, cell) => void open(path, cell)
    });
    sidebar.title.icon = ebIcon;
    app.shell.add(sidebar, 'left', { rank: 850 });
    restorer?.add(sidebar, sidebar.id);

    model.toasts.connect((_, toast) => {
      const actions: Notification.IAction[] = [];
      if (toast.link) {
        const link = toast.link;
        actions.push({ label: 'Open', callback: () => window.open(link, '_blank', 'noopener') });
      }
      if (toast.labPath) {
        const path = toast.labPath;
        actions.push({ label: 'Open output', callback: () => void open(path, toast.cell) });
      }
      if (toast.batch) {
        actions.push({ label: 'Show', callback: () => app.shell.activateById(sidebar.id) });
      }
      Notification.emit(toast.message, toast.type, { autoClose: autoClose(toast), actions });
    });

    app.commands.addCommand(CommandIDs.runNotebook, {
      label: 'Run this notebook…',
      caption: 'Ask every Execution Broker when and where this notebook can run',
      icon: ebIcon,
      isEnabled: () => !!tracker?.currentWidget,
      execute: async () => {
        const panel = tracker?.currentWidget;
        if (!panel) {
          Notification.warning('Open a notebook first: "Run this notebook…" runs the current one');
          return;
        }
        await panel.context.ready;
        if (panel.context.model.dirty) {
          await panel.context.save(); // the broker runs the saved version
        }
        const path = panel.context.path;
        const result = await showDialog<RunFields>({
          title: 'Run this notebook…',
          body: new RunDialogBody(path, model.settings),
          buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Find offers' })],
          focusNodeSelector: 'input[name="when"]'
        });
        if (!result.button.accept || !result.value) {
          return;
        }
        app.shell.activateById(sidebar.id);
        const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
        await model.ask({ ...result.value, path, tz });
      }
    });
    app.commands.addCommand(CommandIDs.showSidebar, {
      label: 'Show the Execution Broker sidebar',
      execute: () => app.shell.activateById(sidebar.id)
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh the Execution Broker sidebar',
      execute: () => model.refresh()
    });
    if (palette) {
      const category = 'Execution Broker';
      for (const command of Object.values(CommandIDs)) {
        palette.addItem({ command, category });
      }
    }
    tracker?.currentChanged.connect(() => {
      app.commands.notifyCommandChanged(CommandIDs.runNotebook);
      sidebar.update();
    });

    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          const apply = (): void => {
            model.configure({
              ...DEFAULT_SETTINGS,
              ...(settings.composite as unknown as Partial<ISettings>)
            });
          };
          apply();
          settings.changed.connect(apply);
        })
        .catch(reason => console.error('jupyter-execution-broker: settings not loaded', reason))
        .finally(() => model.start());
    } else {
      model.start();
    }
  }
};

export default plugin;
