/**
 * The OpenAPI 3.1 document, generated from the route table and its zod schemas: what the
 * server checks and what the document says cannot drift apart.
 */
import { z } from 'zod';
import { ErrorBody } from './schemas.js';
import type { RouteDef } from './routes.js';

function jsonSchema(s: z.ZodType): unknown {
  return z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' });
}

export function openApiDocument(routes: RouteDef[], version: string, sockets: readonly { path: string; role: string; summary: string }[] = []): unknown {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const path = r.url.replace(/:([A-Za-z]+)/g, '{$1}');
    const params = [...r.url.matchAll(/:([A-Za-z]+)/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    if (r.query instanceof z.ZodObject) {
      for (const [name, s] of Object.entries(r.query.shape as Record<string, z.ZodType>)) {
        params.push({ name, in: 'query', required: !s.safeParse(undefined).success, schema: jsonSchema(s) as { type: string } });
      }
    }
    paths[path] ??= {};
    paths[path]![r.method.toLowerCase()] = {
      summary: r.summary,
      ...(r.role === 'public' ? { security: [] } : { 'x-visor-role': r.role }),
      ...(params.length ? { parameters: params } : {}),
      ...(r.body ? { requestBody: { required: true, content: { 'application/json': { schema: jsonSchema(r.body) } } } } : {}),
      ...(r.rawBody ? { requestBody: { required: true, content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } } } : {}),
      responses: {
        '2XX': { description: 'success (202 with Location: /v1/operations/{id} for operations)' },
        default: { description: 'error', content: { 'application/json': { schema: jsonSchema(ErrorBody) } } },
      },
    };
  }
  // WebSockets: a GET with Upgrade: websocket (OpenAPI has no better way to say it); x-visor-websocket marks them.
  for (const w of sockets) {
    const params = [...w.path.matchAll(/\{([A-Za-z]+)\}/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    paths[w.path] ??= {};
    paths[w.path]!.get = {
      summary: w.summary,
      'x-visor-websocket': true,
      'x-visor-role': w.role,
      parameters: [...params, { name: 'token', in: 'query', required: false, schema: { type: 'string' }, description: 'the token, for clients that cannot set headers (browsers)' }],
      responses: {
        '101': { description: 'switching to the WebSocket protocol' },
        default: { description: 'error (before the upgrade)', content: { 'application/json': { schema: jsonSchema(ErrorBody) } } },
      },
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'visor daemon API', version },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    security: [{ bearer: [] }],
    paths,
  };
}
