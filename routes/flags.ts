import { type Request } from 'express';
import { Router } from './router';
import { z } from 'zod';
import { COUNTRY_OPTIONS, isCountryCode } from '../server/countries';
import { requireRole } from '../server/middleware/auth';
import { formAction } from '../server/middleware/forms';
import { parseBody } from '../server/middleware/validate';
import type { RouteContext } from './context';
import { labelled } from './form-labels';

const countryCode = z.string().trim().toUpperCase().refine(isCountryCode, 'Not an ISO 3166-1 alpha-2 country code.');

/** API: a list of codes; each bad one is named by its index (`countries.2`). */
export const restrictedCountriesInput = z.object({ countries: z.array(countryCode, 'countries must be a list of ISO codes.').max(249) }).strict();

/** Form: one text field, codes separated by commas or spaces; every bad code is named in the message. */
export const restrictedCountriesForm = z.object({
  countries: z
    .string()
    .max(2000)
    .transform((text) => text.split(/[\s,;]+/).map((c) => c.trim().toUpperCase()).filter(Boolean))
    .superRefine((codes, ctx) => {
      const bad = codes.filter((c) => !isCountryCode(c));
      if (bad.length) ctx.addIssue({ code: 'custom', message: `Not ISO 3166-1 alpha-2 country codes: ${bad.join(', ')}.` });
    }),
});

const restrictedCountriesLabels = { countries: 'Country codes' };

/** The restricted-country list behind the `restricted-country` red flag (admins). */
export function flagPages({ services }: RouteContext) {
  const router = Router();
  const admin = requireRole('admin');
  const page = async () => {
    const countries = [...(await services.flags.restrictedCountries())].sort();
    const names = new Map(COUNTRY_OPTIONS);
    return { title: 'Restricted countries', countries: countries.map((c) => ({ code: c, name: names.get(c) ?? c })), value: countries.join(', ') };
  };

  router.get('/admin/restricted-countries', admin, labelled(restrictedCountriesLabels), async (_req, res) => res.render('flags/restricted-countries', await page()));

  router.post(
    '/admin/restricted-countries',
    admin,
    labelled(restrictedCountriesLabels),
    formAction('flags/restricted-countries', page, async (req: Request, res) => {
      const list = await services.flags.setRestrictedCountries(parseBody(restrictedCountriesForm, req).countries, req.user!.id);
      res.flash(list.length ? `Restricted countries saved: ${list.join(', ')}.` : 'The restricted-country list is now empty.');
      res.redirect(303, '/admin/restricted-countries');
    }),
  );

  return router;
}

export function restrictedCountriesApi({ services }: RouteContext) {
  const router = Router();
  router.use(requireRole('admin'));

  router.get('/', async (_req, res) => {
    res.json({ countries: [...(await services.flags.restrictedCountries())].sort() });
  });

  router.put('/', async (req, res) => {
    const { countries } = parseBody(restrictedCountriesInput, req);
    res.json({ countries: await services.flags.setRestrictedCountries(countries, req.user!.id) });
  });

  return router;
}
