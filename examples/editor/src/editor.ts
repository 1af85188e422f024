/**
 * The CodeMirror 6 view bound to a Y.Text: `basicSetup` (line numbers, keymaps, search…) plus
 * y-codemirror.next's binding, remote cursors and undo. Undo/redo come from Y.UndoManager (its
 * keymap is first, so it wins over CodeMirror's history): undo only reverts this user's own
 * edits and never a collaborator's.
 */
import { basicSetup } from 'codemirror';
import { EditorState } from '@codemirror/state';
import { EditorView, keymap, placeholder } from '@codemirror/view';
import { yCollab, yUndoManagerKeymap } from 'y-codemirror.next';
import * as Y from 'yjs';
import type { Awareness } from 'y-protocols/awareness';

export function createEditor(parent: HTMLElement, ytext: Y.Text, awareness: Awareness): EditorView {
  const undoManager = new Y.UndoManager(ytext);
  return new EditorView({
    parent,
    state: EditorState.create({
      doc: ytext.toString(),
      extensions: [
        keymap.of(yUndoManagerKeymap),
        basicSetup,
        EditorView.lineWrapping,
        placeholder('Start typing. Open this page in a second window to see it sync…'),
        yCollab(ytext, awareness, { undoManager }),
      ],
    }),
  });
}
