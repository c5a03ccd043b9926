/**
 * An edge replica: one Durable Object per (location, exposed prefix).
 */
import { DurableObject } from 'cloudflare:workers';
import type { Env } from './index.ts';

export class Replica extends DurableObject<Env> {
  override async fetch(_request: Request): Promise<Response> {
    return new Response('ok');
  }
}
