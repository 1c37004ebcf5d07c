/**
 * A tiny element builder for the sidebar (text is always set as text, never as HTML).
 */

export type Child = Node | string | null | undefined | false;

export function h(
  tag: string,
  attrs: Record<string, string | number | boolean | undefined | null> = {},
  ...children: Array<Child | Child[]>
): HTMLElement {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (name === 'class') {
      el.className = String(value);
    } else if (value === true) {
      el.setAttribute(name, '');
    } else {
      el.setAttribute(name, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    el.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return el;
}

export function button(
  label: string,
  className: string,
  onClick: () => void,
  options: { disabled?: boolean; title?: string; accent?: boolean } = {}
): HTMLButtonElement {
  const el = h(
    'button',
    {
      class: `jp-Button ${options.accent ? 'jp-mod-accept' : 'jp-mod-reject'} jp-mod-styled eb-button ${className}`,
      type: 'button',
      title: options.title,
      disabled: options.disabled
    },
    label
  ) as HTMLButtonElement;
  el.addEventListener('click', event => {
    event.preventDefault();
    onClick();
  });
  return el;
}
