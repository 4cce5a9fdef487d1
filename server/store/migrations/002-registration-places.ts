import { Registration, RegistrationPlace } from '../../../models/registrations';
import type { Engine } from '../engine';
import { createRegistrationsStore } from '../registrations';
import type { Migration } from './index';

/**
 * Databases written before registrations were listed by model and country
 * (models/registrations.ts, RegistrationPlace): the lists are built once from the active
 * registrations. A database that has lists already has nothing to convert.
 */
export function registrationPlacesMigration(engine: Engine): Migration {
  const store = createRegistrationsStore(engine);
  return {
    id: '002-registration-places',
    description: 'active registrations → lists by model and country',
    unit: 'registrations',
    async remaining() {
      if (await RegistrationPlace.exists({})) return 0;
      return Registration.countDocuments({ status: 'active' });
    },
    run: (progress) => store.rebuildPlaceLists(progress),
  };
}
