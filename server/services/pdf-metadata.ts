import { PDFArray, PDFDict, PDFDocument, PDFName, PDFRef, PDFStream, type PDFObject } from 'pdf-lib';

/**
 * PDF evidence rewritten without what identifies its author or acts on the reader's machine
 * (issue 20, finding 5). Removed, wherever they sit in the document:
 * - the document information dictionary (Author, Creator, Producer, Title, dates, …) and the
 *   file identifier (`/ID`) of the trailer;
 * - every XMP metadata stream (`/Metadata`, on the catalogue, pages or images) and `/PieceInfo`
 *   (private application data);
 * - `/OpenAction`, additional actions (`/AA`), JavaScript (the `/JavaScript` name tree, `/JS`,
 *   and any `/A` action of type JavaScript, Launch, ImportData or SubmitForm);
 * - embedded files (the `/EmbeddedFiles` name tree, `/EmbeddedFile`, `/AF` associated files,
 *   file-attachment annotations);
 * - every object no longer reachable from the document (the removed ones, and whatever an
 *   earlier incremental save left behind).
 * Not removed: what the pages show (text, images, fonts, links), so a name written on a page, or
 * in a scanned image, is still there; image files inside the PDF keep their own bytes.
 */

const REMOVED_KEYS = ['AA', 'OpenAction', 'JS', 'JavaScript', 'EmbeddedFiles', 'EmbeddedFile', 'AF', 'Metadata', 'PieceInfo'].map((k) => PDFName.of(k));
const ACTIVE_ACTIONS = new Set(['/JavaScript', '/Launch', '/ImportData', '/SubmitForm']);
const A = PDFName.of('A');
const S = PDFName.of('S');
const SUBTYPE = PDFName.of('Subtype');
const ANNOTS = PDFName.of('Annots');

export class UnreadablePdfError extends Error {}

/** Throws UnreadablePdfError when the bytes are not a PDF this can parse (or it is encrypted). */
export async function rewritePdf(bytes: Uint8Array): Promise<Buffer> {
  try {
    return await rewrite(await PDFDocument.load(bytes, { updateMetadata: false }));
  } catch (err) {
    // pdf-lib reads damaged files leniently and fails later, anywhere: all of it is "unreadable".
    throw new UnreadablePdfError((err as Error).message);
  }
}

async function rewrite(doc: PDFDocument): Promise<Buffer> {
  const { context } = doc;
  if (!(context.lookup(context.trailerInfo.Root) instanceof PDFDict)) throw new Error('no document catalogue');
  context.trailerInfo.Info = undefined;
  context.trailerInfo.ID = undefined;

  const reachable = new Set<string>();
  const visit = (obj: PDFObject | undefined): void => {
    if (obj instanceof PDFRef) {
      if (reachable.has(obj.toString())) return;
      reachable.add(obj.toString());
      return visit(context.lookup(obj));
    }
    if (obj instanceof PDFStream) return visit(obj.dict);
    if (obj instanceof PDFArray) return obj.asArray().forEach(visit);
    if (!(obj instanceof PDFDict)) return;
    for (const key of REMOVED_KEYS) obj.delete(key);
    const action = obj.lookup(A);
    if (action instanceof PDFDict && ACTIVE_ACTIONS.has(String(action.get(S)))) obj.delete(A);
    const annots = obj.lookup(ANNOTS);
    if (annots instanceof PDFArray) {
      const kept = annots.asArray().filter((a) => {
        const annot = context.lookup(a);
        return !(annot instanceof PDFDict && String(annot.get(SUBTYPE)) === '/FileAttachment');
      });
      obj.set(ANNOTS, context.obj(kept));
    }
    for (const value of obj.values()) visit(value);
  };
  visit(context.trailerInfo.Root);
  for (const [ref] of context.enumerateIndirectObjects()) if (!reachable.has(ref.toString())) context.delete(ref);

  return Buffer.from(await doc.save({ useObjectStreams: false, updateFieldAppearances: false }));
}
