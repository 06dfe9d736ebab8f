/**
 * The supported model families, one line each: a family is its folder (`models/<model_type>/`)
 * plus its line here; the registry (`./index.ts`) serves every family exported below.
 */
export { family as granitemoehybrid } from './granitemoehybrid/family';
export { family as granite } from './granite/family';
