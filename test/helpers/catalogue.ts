import type { RiskLevel } from '../../models/catalogue';
import type { EndUserType } from '../../models/registrations';
import type { ModelInput, UnitInput } from '../../server/services/catalogue';
import type { RegistrationInput } from '../../server/services/registrations';
import type { TestContext } from './context';
import { makeUser, unique } from './factories';

/**
 * Catalogue and registration factories, built through the services so that the unit's
 * summary, `SerialIndex` and `unitCount` stay as the app keeps them. Other modules' tests
 * import these.
 */

const SYSTEM = { userId: null };

export const DEFAULT_TERMS = 'The product must not be used to surveil journalists, activists or any person without lawful authority.';

/** A product model with one published version of its end-use terms. */
export async function makeModel(ctx: TestContext, fields: Partial<ModelInput> & { riskLevel?: RiskLevel } = {}) {
  return ctx.services.catalogue.createModel(
    {
      sku: fields.sku ?? unique('SKU').toUpperCase(),
      name: fields.name ?? 'Test router',
      category: fields.category ?? 'networking',
      riskLevel: fields.riskLevel ?? 'low',
      capabilities: fields.capabilities ?? [],
      intendedUses: fields.intendedUses ?? ['office networking', 'home networking'],
      publicName: fields.publicName,
      gtin: fields.gtin,
      endUseTerms: 'endUseTerms' in fields ? fields.endUseTerms : DEFAULT_TERMS,
    },
    SYSTEM,
  );
}

/** A unit (of `model`, or of a new low-risk model). */
export async function makeUnit(ctx: TestContext, fields: Partial<Omit<UnitInput, 'sku'>> & { model?: { _id: string }; riskLevel?: RiskLevel } = {}) {
  const model = fields.model ?? (await makeModel(ctx, { riskLevel: fields.riskLevel }));
  const unit = await ctx.services.catalogue.createUnit(
    { sku: model._id, serial: fields.serial ?? unique('SN').toUpperCase(), manufacturedAt: fields.manufacturedAt ?? null, firstSale: fields.firstSale },
    SYSTEM,
  );
  return { unit, model };
}

/** Registration fields for `unit` that pass every check; override any of them. */
export function registrationInput(unit: { modelId: string; serial: string }, fields: Partial<RegistrationInput> = {}): RegistrationInput {
  return {
    modelSku: unit.modelId,
    serial: unit.serial,
    ownerOrganisation: 'Nairobi Clinic Ltd',
    contactName: 'Wanjiru Kamau',
    contactEmail: 'it@clinic.example',
    country: 'KE',
    region: 'Nairobi County',
    city: 'Nairobi',
    endUserType: 'commercial-company' as EndUserType,
    intendedUse: 'office networking',
    declaredEndUse: 'Clinic office network',
    purchaseDate: new Date('2026-01-02T00:00:00Z'),
    seller: 'Savannah Distribution',
    termsVersion: 1,
    acceptTerms: true,
    ...fields,
  };
}

/**
 * A unit registered by a customer (a new one unless `user` is given). Returns the registration,
 * the unit as it is after registering, its model and the customer.
 */
export async function makeRegistration(
  ctx: TestContext,
  fields: Partial<RegistrationInput> & { user?: { _id: unknown }; unit?: { modelId: string; serial: string; _id: string }; model?: { _id: string }; riskLevel?: RiskLevel } = {},
) {
  const { user: givenUser, unit: givenUnit, model: givenModel, riskLevel, ...input } = fields;
  const user = givenUser ?? (await makeUser(ctx, 'customer')).user;
  const made = givenUnit ? { unit: givenUnit } : await makeUnit(ctx, { model: givenModel, riskLevel });
  const { registration, flags } = await ctx.services.registrations.register(registrationInput(made.unit, input), { userId: String(user._id) });
  const unit = await ctx.services.catalogue.getUnit(made.unit._id);
  const model = await ctx.services.catalogue.getModel(unit.modelId);
  return { registration, unit, model, user, flags };
}
