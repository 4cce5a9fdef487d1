import fs from 'node:fs';
import { cataloguePath, compileMessage, LANGUAGES, translator } from '../server/i18n';

/** Every language's catalogue: the same keys as English, and every message valid ICU that formats. */
describe('reporter-page translations', () => {
  const read = (code: string) => JSON.parse(fs.readFileSync(cataloguePath(code), 'utf8')) as Record<string, string>;
  const english = read('en');

  it.each(LANGUAGES.map((l) => l.code))('%s has exactly the English keys, each valid ICU MessageFormat', (code) => {
    const catalogue = read(code);
    expect(Object.keys(catalogue).sort()).toEqual(Object.keys(english).sort());
    for (const [key, message] of Object.entries(catalogue)) {
      expect(() => compileMessage(message, code)).not.toThrow();
      expect([key, message.trim()]).not.toEqual([key, '']);
    }
  });

  it('formats plurals and numbers in the language (Russian few, English grouping)', () => {
    expect(translator('ru')('evidence.attached', { count: 3 })).toContain('3 файла');
    expect(translator('en')('error.tooLong', { label: 'Text', count: 70010, max: 10000 })).toContain('70,010');
  });
});
