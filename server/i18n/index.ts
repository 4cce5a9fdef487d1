import fs from 'node:fs';
import path from 'node:path';
import type { Request, RequestHandler } from 'express';
import { COUNTRY_CODES } from '../countries';

// intl-messageformat ships as an ES module only; this CommonJS project loads it with require
// (tsx at run time; jest through the transform jest.config.js names for it).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { IntlMessageFormat } = require('intl-messageformat') as typeof import('intl-messageformat', { with: { 'resolution-mode': 'import' } });
type IntlMessageFormat = InstanceType<typeof IntlMessageFormat>;

/**
 * The reporter-facing pages in the reporter's language: one ICU MessageFormat catalogue per
 * language (messages/<code>.json, flat keys), formatted by intl-messageformat. The language is
 * the one chosen with `?lang=` (remembered in a cookie that holds nothing else), else the best
 * match of `Accept-Language`, else English. Staff pages stay in English.
 */

export const LANGUAGES = [
  { code: 'en', name: 'English', dir: 'ltr' },
  { code: 'fr', name: 'Français', dir: 'ltr' },
  { code: 'es', name: 'Español', dir: 'ltr' },
  { code: 'ar', name: 'العربية', dir: 'rtl' },
  { code: 'fa', name: 'فارسی', dir: 'rtl' },
  { code: 'ru', name: 'Русский', dir: 'ltr' },
] as const;
export type Language = (typeof LANGUAGES)[number]['code'];
export const DEFAULT_LANGUAGE: Language = 'en';
export const LANGUAGE_COOKIE = 'lang';

const catalogueDir = path.join(__dirname, 'messages');
export const cataloguePath = (code: string) => path.join(catalogueDir, `${code}.json`);

export type Catalogue = Record<string, string>;
const catalogues = new Map<string, Catalogue>(LANGUAGES.map((l) => [l.code, JSON.parse(fs.readFileSync(cataloguePath(l.code), 'utf8')) as Catalogue]));

export const isLanguage = (code: unknown): code is Language => typeof code === 'string' && catalogues.has(code);

/** Parses a message as ICU MessageFormat for `lang`; throws on broken syntax (the catalogue test). */
export const compileMessage = (message: string, lang: string) => new IntlMessageFormat(message, lang);

export type Translate = (key: string, values?: Record<string, string | number | Date>) => string;

/** A translator for one language; a key missing from its catalogue falls back to English (the test forbids it). */
export function translator(lang: Language): Translate {
  const formats = new Map<string, IntlMessageFormat>();
  const own = catalogues.get(lang)!;
  const english = catalogues.get(DEFAULT_LANGUAGE)!;
  return (key, values) => {
    let format = formats.get(key);
    if (!format) {
      const source = own[key] ?? english[key];
      if (source === undefined) throw new Error(`i18n: no message "${key}"`);
      format = new IntlMessageFormat(source, own[key] !== undefined ? lang : DEFAULT_LANGUAGE);
      formats.set(key, format);
    }
    return String(format.format(values));
  };
}

/** The best of `Accept-Language` among ours (`fr-CA` → fr), by quality, or null. */
export function fromAcceptLanguage(header: string | undefined): Language | null {
  if (!header) return null;
  const ranked = header
    .split(',')
    .map((part, i) => {
      const [tag, ...params] = part.trim().split(';');
      const q = params.map((p) => /^\s*q=([\d.]+)\s*$/.exec(p)?.[1]).find(Boolean);
      return { base: (tag ?? '').trim().toLowerCase().split('-')[0]!, q: q === undefined ? 1 : Number(q), i };
    })
    .filter((r) => r.q > 0)
    .sort((a, b) => b.q - a.q || a.i - b.i);
  return ranked.map((r) => r.base).find(isLanguage) ?? null;
}

export function chooseLanguage(req: Request): Language {
  const asked = req.query.lang;
  if (isLanguage(asked)) return asked;
  const remembered = (req.cookies as Record<string, unknown> | undefined)?.[LANGUAGE_COOKIE];
  if (isLanguage(remembered)) return remembered;
  return fromAcceptLanguage(req.get('Accept-Language')) ?? DEFAULT_LANGUAGE;
}

/** Country `[code, name]` pairs in `lang`, sorted for that language (names from Intl.DisplayNames). */
export function countryOptions(lang: Language): Array<[string, string]> {
  const names = new Intl.DisplayNames([lang], { type: 'region' });
  return [...COUNTRY_CODES].map((c): [string, string] => [c, names.of(c) ?? c]).sort((a, b) => a[1].localeCompare(b[1], lang));
}

/**
 * Sets the page's language for the views (`lang`, `dir`, `t`, `formatDate`, `languages`), and
 * remembers a language chosen with `?lang=` in its own cookie for a year.
 */
export function languageMiddleware(opts: { cookieSecure: boolean }): RequestHandler {
  const translators = new Map(LANGUAGES.map((l) => [l.code, translator(l.code)]));
  return (req, res, next) => {
    const lang = chooseLanguage(req);
    if (isLanguage(req.query.lang) && req.cookies?.[LANGUAGE_COOKIE] !== lang) {
      res.cookie(LANGUAGE_COOKIE, lang, { httpOnly: true, sameSite: 'lax', secure: opts.cookieSecure, path: '/', maxAge: 365 * 86_400_000 });
    }
    res.vary('Accept-Language');
    const dates = new Intl.DateTimeFormat(lang, { dateStyle: 'medium', timeZone: 'UTC' });
    const times = new Intl.DateTimeFormat(lang, { dateStyle: 'medium', timeStyle: 'short', timeZone: 'UTC' });
    Object.assign(res.locals, {
      lang,
      dir: LANGUAGES.find((l) => l.code === lang)!.dir,
      t: translators.get(lang),
      languages: LANGUAGES,
      formatDate: (d: Date) => dates.format(d),
      formatDateTime: (d: Date) => times.format(d),
      formatNumber: (n: number) => n.toLocaleString(lang),
    });
    next();
  };
}
