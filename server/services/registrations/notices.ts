import type { AuthService } from '../auth';
import type { NotificationsService } from '../notifications';

/**
 * What customers and staff are told about registrations and transfers: the customer when their
 * registration takes effect and when a transfer they asked for is decided; investigators and
 * admins when a transfer waits for one of them. E-mail is queued (server/services/notifications).
 */
export function registrationNotices(deps: { auth: Pick<AuthService, 'getUser'>; notifications: Pick<NotificationsService, 'mailLater' | 'notifyStaff' | 'transferDeciders'> }) {
  const { notifications } = deps;
  const customer = (userId: string) => deps.auth.getUser(userId).catch(() => null);

  return {
    async registrationConfirmed(r: { customerUserId: unknown; serial: string; modelId: string }) {
      const account = await customer(String(r.customerUserId));
      if (!account) return;
      await notifications.mailLater([
        {
          to: account.email,
          subject: `Your unit ${r.serial} is registered`,
          text: [`Hello ${account.name},`, '', `Your unit ${r.serial} (${r.modelId}) is now registered to you. You will find it, and its timeline, under "My products" on your account.`].join('\n'),
        },
      ]);
    },

    async transferPending(transfer: { _id: string; unitId: string }) {
      await notifications.notifyStaff(await notifications.transferDeciders(), {
        kind: 'transfer-pending',
        subject: `A transfer of ${transfer.unitId} waits for approval`,
        link: `/admin/transfers/${transfer._id}`,
        text: `A customer reported a transfer of unit ${transfer.unitId}; it takes effect once someone approves it.`,
      });
    },

    async transferDecided(transfer: { requestedByUserId: unknown; unitId: string; status: string; decision?: { reason?: string | null } | null }) {
      const account = await customer(String(transfer.requestedByUserId));
      if (!account) return;
      const approved = transfer.status === 'effective';
      await notifications.mailLater([
        {
          to: account.email,
          subject: `Your transfer of ${transfer.unitId} was ${approved ? 'approved' : 'refused'}`,
          text: [
            `Hello ${account.name},`,
            '',
            approved ? `The transfer you reported for unit ${transfer.unitId} was approved and has taken effect.` : `The transfer you reported for unit ${transfer.unitId} was refused; the unit stays registered to you.`,
            ...(transfer.decision?.reason ? ['', `Reason given: ${transfer.decision.reason}`] : []),
            '',
            'See "My products" on your account.',
          ].join('\n'),
        },
      ]);
    },
  };
}
