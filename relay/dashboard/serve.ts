/**
 * `/dashboard`: a page the relay serves as it is — plain HTML, CSS and one script, no build step
 * (relay/dashboard/). The script polls `/_relay/status` and `/metrics` on the same origin, so the
 * page needs nothing the relay does not already answer. Read once at start-up; a strict
 * Content-Security-Policy allows only the relay's own files.
 */
import { readFileSync } from 'node:fs';
import type { Hono } from 'hono';

const FILES = {
  '/dashboard': ['index.html', 'text/html; charset=utf-8'],
  '/dashboard/dashboard.js': ['dashboard.js', 'text/javascript; charset=utf-8'],
  '/dashboard/dashboard.css': ['dashboard.css', 'text/css; charset=utf-8'],
} as const;

const HEADERS = {
  'Cache-Control': 'no-cache',
  'X-Content-Type-Options': 'nosniff',
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'",
};

export function serveDashboard(app: Hono): void {
  for (const [path, [file, type]] of Object.entries(FILES)) {
    const body = readFileSync(new URL(file, import.meta.url), 'utf8');
    app.get(path, (c) => c.body(body, 200, { ...HEADERS, 'Content-Type': type }));
  }
  app.get('/dashboard/', (c) => c.redirect('/dashboard', 301));
}
