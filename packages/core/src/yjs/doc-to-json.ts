/* eslint-disable @typescript-eslint/no-explicit-any -- Yjs types are generic over their event type */
import * as Y from 'yjs';
import { CapsyncError } from '../errors.js';

/** Deepest nesting `docToJSON` renders unless told otherwise. */
export const DEFAULT_MAX_JSON_DEPTH = 1000;

export interface DocToJSONOptions {
  /**
   * Deepest nesting rendered (a top-level type is depth 1; every map, array, XML element or
   * plain JSON object/array inside adds one). Deeper content throws `too-deep`. Default 1000.
   */
  maxDepth?: number;
}

/**
 * JSON of a document's top-level shared types, for inspection over HTTP.
 *
 * A relay never declares the types it stores: a top-level type created by a remote update is
 * a bare `AbstractType` until someone asks for it by kind. This infers the kind from the
 * content (map entries, text, XML nodes or array items) and reads it as that kind.
 *
 * Anyone who may write a document decides how deep it nests, and Yjs' own `toJSON` recurses
 * once per level (a 20,000-deep map overflows the stack). So maps and arrays are walked with an
 * explicit stack, and content nested deeper than `maxDepth` throws CapsyncError 'too-deep'
 * instead: the cost is bounded by the document's size, never by the call stack.
 */
export function docToJSON(doc: Y.Doc, options: DocToJSONOptions = {}): Record<string, unknown> {
  const maxDepth = options.maxDepth ?? DEFAULT_MAX_JSON_DEPTH;
  const out: Record<string, unknown> = {};
  const pending: Task[] = [];
  for (const name of Array.from(doc.share.keys())) {
    const type = doc.share.get(name)!;
    out[name] = null;
    pending.push({ value: typed(doc, name, type), depth: 1, put: (v) => (out[name] = v) });
  }
  while (pending.length > 0) {
    const { value, depth, put } = pending.pop()!;
    if (!isContainer(value)) {
      put(value);
      continue;
    }
    if (depth > maxDepth) throw tooDeep(maxDepth);
    if (value instanceof Y.Text) put(value.toString());
    else if (value instanceof Y.XmlFragment || value instanceof Y.XmlElement || value instanceof Y.XmlText) put(xmlToString(value, depth, maxDepth));
    else if (value instanceof Y.Map || isPlainObject(value)) {
      const obj: Record<string, unknown> = {};
      put(obj);
      const entries = value instanceof Y.Map ? Array.from(value.entries()) : Object.entries(value);
      for (const [k, v] of entries) {
        obj[k] = null; // keeps the keys in their order while the values are filled from the stack
        pending.push({ value: v, depth: depth + 1, put: (x) => (obj[k] = x) });
      }
    } else {
      const items: unknown[] = value instanceof Y.Array ? value.toArray() : (value as unknown[]);
      const arr = new Array<unknown>(items.length);
      put(arr);
      items.forEach((v, i) => pending.push({ value: v, depth: depth + 1, put: (x) => (arr[i] = x) }));
    }
  }
  return out;
}

interface Task {
  value: unknown;
  depth: number;
  put: (rendered: unknown) => void;
}

/** Shared types and plain JSON objects/arrays (bytes and primitives are leaves). */
function isContainer(v: unknown): v is Y.AbstractType<any> | Record<string, unknown> | unknown[] {
  return v instanceof Y.AbstractType || Array.isArray(v) || isPlainObject(v);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array || v instanceof Y.AbstractType) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * XML as Yjs prints it, after checking its element depth without recursion (Yjs' toString
 * recurses once per element, which the cap keeps within the stack).
 */
function xmlToString(xml: Y.XmlFragment | Y.XmlElement | Y.XmlText, depth: number, maxDepth: number): string {
  const stack: [unknown, number][] = [[xml, depth]];
  while (stack.length > 0) {
    const [node, d] = stack.pop()!;
    if (d > maxDepth) throw tooDeep(maxDepth);
    if (node instanceof Y.XmlFragment) for (const child of node.toArray()) stack.push([child, d + 1]);
  }
  try {
    return xml.toString();
  } catch (err) {
    // A cap set higher than the stack allows: still a clear refusal, not a crash.
    if (err instanceof RangeError) throw tooDeep(maxDepth);
    throw err;
  }
}

function tooDeep(maxDepth: number): CapsyncError {
  return new CapsyncError('too-deep', `the document nests deeper than ${maxDepth} levels, too deep to render as JSON (--max-json-depth)`);
}

export type SharedTypeKind = 'map' | 'text' | 'xml' | 'array' | 'empty';

/** The top-level type `name`, read as the kind its content shows (null when empty). */
function typed(doc: Y.Doc, name: string, type: Y.AbstractType<any>): unknown {
  switch (sharedTypeKind(type)) {
    case 'map':
      return doc.getMap(name);
    case 'text':
      return doc.getText(name);
    case 'xml':
      return doc.getXmlFragment(name);
    case 'array':
      return doc.getArray(name);
    case 'empty':
      return null;
  }
}

/**
 * What a top-level type holds, from its content when it is still a bare AbstractType (see
 * docToJSON): 'empty' when it holds nothing visible (deleted content does not count).
 */
export function sharedTypeKind(type: Y.AbstractType<any>): SharedTypeKind {
  if (type instanceof Y.Map) return 'map';
  if (type instanceof Y.Text) return 'text';
  if (type instanceof Y.XmlFragment) return 'xml';
  if (type instanceof Y.Array) return 'array';
  for (let item = type._start; item !== null; item = item.right) {
    if (item.deleted) continue;
    const content = item.content;
    if (content instanceof Y.ContentString || content instanceof Y.ContentFormat || content instanceof Y.ContentEmbed) return 'text';
    if (content instanceof Y.ContentType && (content.type instanceof Y.XmlElement || content.type instanceof Y.XmlText)) return 'xml';
    return 'array';
  }
  for (const item of type._map.values()) if (!item.deleted) return 'map';
  return 'empty';
}
