import mongoose from 'mongoose';
import { IdentityRequest } from '../../models/cases';
import type { IdentityRequestStatus } from '../domain/cases';
import type { Engine } from './engine';

export type StoredIdentityRequest = NonNullable<Awaited<ReturnType<typeof readRequest>>>;
const readRequest = (id: string) => IdentityRequest.findById(id).lean();

/**
 * Requests to see a case's reporter identity, and the grants they become. A small collection
 * (a few per case): its filters scan on FerretDB, and the indexes serve MongoDB. Every change
 * is one write guarded by the status it changes from, so of two approvers one decides.
 */
export function createIdentityRequestsStore(_engine: Engine) {
  return {
    insertRequest: (request: { _id: string; caseId: string; requesterId: string; reason: string; requestedAt: Date }) =>
      IdentityRequest.create({ ...request, requesterId: new mongoose.Types.ObjectId(request.requesterId), status: 'pending' }),

    requestById: readRequest,

    /** This person's requests on this case, newest first. */
    requestsOf: (caseId: string, requesterId: string) =>
      IdentityRequest.find({ caseId, requesterId: new mongoose.Types.ObjectId(requesterId) }).sort({ requestedAt: -1 }).limit(50).lean(),

    /** A case's requests, newest first. */
    requestsOfCase: (caseId: string) => IdentityRequest.find({ caseId }).sort({ requestedAt: -1 }).limit(200).lean(),

    /** The approvers' queue, oldest first. */
    pendingRequests: () => IdentityRequest.find({ status: 'pending' }).sort({ requestedAt: 1, _id: 1 }).limit(500).lean(),

    /** Approves or refuses a pending request; null when it was no longer pending. */
    decide: (id: string, decision: { status: Extract<IdentityRequestStatus, 'approved' | 'refused'>; decidedByUserId: string; decidedAt: Date; decisionReason: string; expiresAt: Date | null }) =>
      IdentityRequest.findOneAndUpdate(
        { _id: id, status: 'pending' },
        { $set: { ...decision, decidedByUserId: new mongoose.Types.ObjectId(decision.decidedByUserId) } },
        { new: true },
      ).lean(),

    /** Marks a grant run out; true for the one caller that did (so its expiry is audited once). */
    async expire(id: string, now: Date): Promise<boolean> {
      const res = await IdentityRequest.updateOne({ _id: id, status: 'approved', expiresAt: { $lte: now } }, { $set: { status: 'expired' } });
      return res.modifiedCount === 1;
    },
  };
}

export type IdentityRequestsStore = ReturnType<typeof createIdentityRequestsStore>;
