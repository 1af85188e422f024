/* eslint-disable @typescript-eslint/no-explicit-any -- Yjs types are generic over their event type */
import * as Y from 'yjs';

/**
 * JSON of a document's top-level shared types, for inspection over HTTP.
 *
 * A relay never declares the types it stores: a top-level type created by a remote update is
 * a bare `AbstractType` until someone asks for it by kind. This infers the kind from the
 * content (map entries, text, XML nodes or array items) and reads it as that kind.
 */
export function docToJSON(doc: Y.Doc): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const name of Array.from(doc.share.keys())) {
    const type = doc.share.get(name)!;
    out[name] = typeToJSON(doc, name, type);
  }
  return out;
}

type Kind = 'map' | 'text' | 'xml' | 'array' | 'empty';

function typeToJSON(doc: Y.Doc, name: string, type: Y.AbstractType<any>): unknown {
  switch (inferKind(type)) {
    case 'map':
      return doc.getMap(name).toJSON();
    case 'text':
      return doc.getText(name).toString();
    case 'xml':
      return doc.getXmlFragment(name).toString();
    case 'array':
      return doc.getArray(name).toJSON();
    case 'empty':
      return null;
  }
}

function inferKind(type: Y.AbstractType<any>): Kind {
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
