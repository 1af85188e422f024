/**
 * Who is here: this tab's identity in awareness, and the list of everyone present.
 *
 * y-codemirror.next draws remote cursors from each awareness state's `user` field
 * ({ name, color, colorLight }), so that is the shape published here.
 */
import type { Awareness } from 'y-protocols/awareness';

export interface PresenceUser {
  name: string;
  color: string;
  colorLight: string;
}

const COLORS = ['#e5484d', '#f76b15', '#ffc53d', '#30a46c', '#12a594', '#0090ff', '#6e56cf', '#d6409f'];
const ANIMALS = ['Otter', 'Heron', 'Lynx', 'Badger', 'Marten', 'Puffin', 'Ibex', 'Gecko', 'Wombat', 'Kestrel'];

/** sessionStorage, not localStorage: two windows of one browser are two people in the demo. */
const STORAGE_KEY = 'capsync-editor-user';

function pick<T>(items: readonly T[]): T {
  return items[Math.floor(Math.random() * items.length)]!;
}

function withLight(name: string, color: string): PresenceUser {
  // colorLight shades the remote selection; a translucent version of the cursor color.
  return { name, color, colorLight: `${color}33` };
}

export function localUser(): PresenceUser {
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) ?? 'null') as { name?: unknown; color?: unknown } | null;
    if (saved && typeof saved.name === 'string' && typeof saved.color === 'string') return withLight(saved.name, saved.color);
  } catch {
    // Corrupt or unavailable storage: fall through to a fresh identity.
  }
  // A number keeps two tabs apart even when they draw the same animal.
  const user = withLight(`${pick(ANIMALS)} ${Math.floor(10 + Math.random() * 90)}`, pick(COLORS));
  saveUser(user);
  return user;
}

function saveUser(user: PresenceUser): void {
  try {
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ name: user.name, color: user.color }));
  } catch {
    // Private mode may refuse storage; the identity just will not survive a reload.
  }
}

/**
 * Publishes `user` in awareness, lets the name input rename it, and keeps `list` showing every
 * present user (this tab first).
 */
export function bindPresence(awareness: Awareness, user: PresenceUser, nameInput: HTMLInputElement, list: HTMLElement): void {
  awareness.setLocalStateField('user', user);
  nameInput.value = user.name;

  const onRename = (): void => {
    const name = nameInput.value.trim() || user.name;
    nameInput.value = name;
    user = { ...user, name };
    saveUser(user);
    awareness.setLocalStateField('user', user);
  };
  nameInput.addEventListener('change', onRename);

  const render = (): void => {
    const people: Array<{ id: number; user: PresenceUser }> = [];
    for (const [id, state] of awareness.getStates()) {
      const u = (state as { user?: Partial<PresenceUser> }).user;
      if (u && typeof u.name === 'string' && typeof u.color === 'string') people.push({ id, user: u as PresenceUser });
    }
    people.sort((a, b) => Number(b.id === awareness.clientID) - Number(a.id === awareness.clientID) || a.user.name.localeCompare(b.user.name));
    list.replaceChildren(
      ...people.map(({ id, user: u }) => {
        const item = document.createElement('li');
        const dot = document.createElement('span');
        dot.className = 'dot';
        dot.style.background = u.color;
        // textContent, not innerHTML: names come from other people's browsers.
        item.append(dot, document.createTextNode(id === awareness.clientID ? `${u.name} (you)` : u.name));
        return item;
      }),
    );
  };
  awareness.on('change', render);
  render();
}
