/**
 * `@capsync/core/conformance`: the conformance suites of core's interfaces (DocStore,
 * FenceStore, Channel) and the case shape and checks every capsync suite shares.
 */
export * from './conformance-case.js';
export * from '../storage/conformance.js';
export * from '../locks/fence-store-conformance.js';
export * from '../session/channel-conformance.js';
