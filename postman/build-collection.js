#!/usr/bin/env node
/*
 * Generates gemini-backend.postman_collection.json and local.postman_environment.json.
 *
 * The collection is the artefact (import it into Postman, or run it with run.sh); this script only keeps
 * its ~45 test scripts consistent (shared JSON Schemas, one variable helper). After editing it, run
 *   node postman/build-collection.js
 * and commit both JSON files. No dependencies.
 */
'use strict';

const fs = require('fs');
const path = require('path');

const OUT_DIR = __dirname;
const SCHEMA_URL = 'https://schema.getpostman.com/json/collection/v2.1.0/collection.json';

// ---------------------------------------------------------------------------------------------------------------
// JSON Schemas of API.md's response bodies. This source goes verbatim into the collection-level pre-request
// script (which publishes them as the `schemas` variable); it is also evaluated here to check schema names.
// ---------------------------------------------------------------------------------------------------------------
const SCHEMA_SOURCE = String.raw`
// JSON Schemas of API.md's response bodies, for pm.response.to.have.jsonSchema in the request tests.
const ts = { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|\\+00:00)$' };
const tsOrNull = { anyOf: [ts, { type: 'null' }] };
const id = { type: 'integer', minimum: 1 };
const text = { type: 'string', minLength: 1 };
// An object: every key of the first argument must be present (null only where its type allows it).
const object = (required, optional = {}) => ({
    type: 'object', required: Object.keys(required), properties: { ...required, ...optional },
});
const url = { type: 'string', pattern: '^https?://' };

const Subscription = object({
    tier: { enum: ['basic', 'pro'] },
    status: text,
    current_period_end: tsOrNull,
    cancel_at_period_end: { type: 'boolean' },
});
const User = object({
    id,
    phone: { type: 'string', pattern: '^\\+[1-9]\\d{6,14}$' },
    name: { type: ['string', 'null'] },
    email: { type: ['string', 'null'] },
    tier: { enum: ['basic', 'pro'] },
    has_password: { type: 'boolean' },
    created_at: ts,
    subscription: Subscription,
});
const tokens = {
    access_token: text,
    token_type: { const: 'bearer' },
    expires_in: { type: 'integer', minimum: 1 },
    refresh_token: text,
    token: text,
    user: User,
};
const chatroom = {
    id,
    name: { type: 'string', minLength: 1, maxLength: 100 },
    created_at: ts,
    updated_at: ts,
    last_message_at: tsOrNull,
    message_count: { type: 'integer', minimum: 0 },
    model: { type: ['string', 'null'] },
    system_instruction: { type: ['string', 'null'] },
    temperature: { type: ['number', 'null'], minimum: 0, maximum: 2 },
    max_output_tokens: { type: ['integer', 'null'], minimum: 1 },
    active_leaf_id: { anyOf: [id, { type: 'null' }] },
};
const Attachment = object({
    id,
    name: text,
    mime_type: text,
    size: { type: 'integer', minimum: 1 },
});
const message = {
    id,
    chatroom_id: id,
    role: { enum: ['user', 'model'] },
    content: { type: 'string' },
    status: { enum: ['pending', 'complete', 'failed', 'blocked', 'stopped'] },
    error: { anyOf: [{ type: 'null' }, object({ code: text, message: { type: 'string' } })] },
    reply_to: { anyOf: [id, { type: 'null' }] },
    parent_id: { anyOf: [id, { type: 'null' }] },
    created_at: ts,
    completed_at: tsOrNull,
    usage: { anyOf: [{ type: 'null' }, object({
        prompt_tokens: { type: 'integer', minimum: 0 },
        output_tokens: { type: 'integer', minimum: 0 },
        thinking_tokens: { type: 'integer', minimum: 0 },
        cached_tokens: { type: 'integer', minimum: 0 },
        total_tokens: { type: 'integer', minimum: 0 },
    })] },
    feedback: { anyOf: [{ type: 'null' }, object({
        rating: { enum: ['up', 'down', null] },
        comment: { anyOf: [{ type: 'string' }, { type: 'null' }] },
        updated_at: ts,
    })] },
    attachments: { type: 'array', items: Attachment },
};
const Message = object(message);
// A message of a branch (room detail, pages) also names its siblings, itself included: "2 / 3".
const BranchMessage = object({ ...message, sibling_ids: { type: 'array', items: id, minItems: 1 } });
const messagePage = { messages: { type: 'array', items: BranchMessage }, has_more: { type: 'boolean' } };

const SCHEMAS = {
    Subscription,
    User,
    Message,
    Tokens: object(tokens),
    PasswordChanged: object({ ...tokens, message: text }),
    SignupResponse: object({ message: text, user: User }),
    OtpSent: object({ message: text, expires_in: { type: 'integer', minimum: 1 } },
        { otp: { type: 'string', pattern: '^\\d{6}$' } }),
    MessageOnly: object({ message: text }),
    Usage: object({
        tier: { enum: ['basic', 'pro'] },
        daily_limit: { type: ['integer', 'null'] },
        used_today: { type: 'integer', minimum: 0 },
        remaining: { type: ['integer', 'null'] },
        resets_at: ts,
        tokens_today: { type: 'integer', minimum: 0 },
        tokens_this_month: { type: 'integer', minimum: 0 },
    }),
    Chatroom: object(chatroom),
    ChatroomList: object({ chatrooms: { type: 'array', items: object(chatroom) } }),
    ChatroomDetail: object({ ...chatroom, ...messagePage }),
    MessagePage: object(messagePage),
    PostedMessage: object({ message: Message, reply: Message }),
    Checkout: object({ checkout_url: url, url, session_id: text }),
    Portal: object({ url }),
    WebhookReceived: object({ received: { const: true } }),
    File: object({ ...Attachment.properties, sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' }, created_at: ts }),
    SearchPage: object({
        results: { type: 'array', items: object({
            chatroom_id: id,
            chatroom_name: text,
            message_id: id,
            role: { enum: ['user', 'model'] },
            snippet: { type: 'string' },
            created_at: ts,
        }) },
        has_more: { type: 'boolean' },
        next_before: { type: ['string', 'null'] },
    }),
    Share: object({ id: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' }, url, created_at: ts }),
    // A shared message: only these fields (no feedback, usage, error, attachments or chatroom id).
    SharedSnapshot: object({
        chatroom_name: text,
        messages: { type: 'array', items: {
            ...object({
                id,
                role: message.role,
                content: message.content,
                status: message.status,
                reply_to: message.reply_to,
                parent_id: message.parent_id,
                created_at: ts,
                completed_at: tsOrNull,
            }),
            additionalProperties: false,
        } },
        created_at: ts,
    }),
};
`;
// eslint-disable-next-line no-new-func
const SCHEMAS = new Function(SCHEMA_SOURCE + '\nreturn SCHEMAS;')();

// ---------------------------------------------------------------------------------------------------------------
// Script snippets
// ---------------------------------------------------------------------------------------------------------------

// Writes a value where {{name}} will find it: the collection variables always, and the active environment too
// when it defines the name (an environment value would otherwise shadow the collection's).
const SAVE = [
  'const save = (name, value) => {',
  '    pm.collectionVariables.set(name, value);',
  '    if (pm.environment.has(name)) { pm.environment.set(name, value); }',
  '};',
];

const lines = (text) => text.replace(/^\n/, '').replace(/\n\s*$/, '').split('\n');

// The schemas live once, in the collection-level pre-request script, which publishes them as the `schemas`
// variable for the request's own scripts.
function schemaTest(schemaName, label) {
  if (!SCHEMAS[schemaName]) throw new Error('no schema ' + schemaName);
  return [
    `pm.test(${JSON.stringify(`${label || 'body'} matches the ${schemaName} schema`)}, () => {`,
    `    pm.response.to.have.jsonSchema(JSON.parse(pm.variables.get('schemas')).${schemaName});`,
    '});',
  ];
}

function statusTest(...codes) {
  if (codes.length === 1) {
    return [`pm.test('status is ${codes[0]}', () => pm.response.to.have.status(${codes[0]}));`];
  }
  return [`pm.test('status is one of ${codes.join(', ')}', () => pm.expect(pm.response.code).to.be.oneOf(${JSON.stringify(codes)}));`];
}

// An expected error: status, the machine code(s) and the common shape (the collection-level test checks the shape
// for every non-2xx; this one pins the `error` value).
function errorTest(code, errors) {
  const list = Array.isArray(errors) ? errors : [errors];
  return [
    ...statusTest(code),
    `pm.test(${JSON.stringify(`error is ${list.join(' or ')}`)}, () => {`,
    '    const body = pm.response.json();',
    `    pm.expect(body).to.include.all.keys('code', 'status', 'error', 'message');`,
    `    pm.expect(body.code).to.eql(${code});`,
    `    pm.expect(body.error).to.be.oneOf(${JSON.stringify(list)});`,
    '});',
  ];
}

// ---------------------------------------------------------------------------------------------------------------
// Request builder
// ---------------------------------------------------------------------------------------------------------------
function url(pathWithQuery) {
  const [p, qs] = pathWithQuery.split('?');
  const out = {
    raw: `{{baseUrl}}${pathWithQuery}`,
    host: ['{{baseUrl}}'],
    path: p.replace(/^\//, '').split('/'),
  };
  if (qs) {
    out.query = qs.split('&').map((pair) => {
      const [key, value] = pair.split('=');
      return { key, value };
    });
  }
  return out;
}

/**
 * spec: {name, method, path, body?, rawBody?, contentType?, formData?, headers?, auth?: 'none'|'bearer:{{var}}',
 *        description, pre?: [lines], test: [lines]}
 * formData: multipart/form-data parts, as Postman writes them ({key, type: 'text', value} or
 * {key, type: 'file', src}); newman reads a file part's `src` relative to its working directory.
 */
function request(spec) {
  const headers = [...(spec.headers || [])];
  const req = { method: spec.method, header: headers, url: url(spec.path), description: spec.description };
  if (spec.body !== undefined || spec.rawBody !== undefined) {
    headers.unshift({ key: 'Content-Type', value: spec.contentType || 'application/json' });
    req.body = {
      mode: 'raw',
      raw: spec.rawBody !== undefined ? spec.rawBody : JSON.stringify(spec.body, null, 2),
    };
    if (!spec.contentType) req.body.options = { raw: { language: 'json' } };
  } else if (spec.formData) {
    req.body = { mode: 'formdata', formdata: spec.formData };  // newman writes the Content-Type with its boundary
  }
  if (spec.auth === 'none') {
    req.auth = { type: 'noauth' };
  } else if (spec.auth && spec.auth.startsWith('bearer:')) {
    req.auth = { type: 'bearer', bearer: [{ key: 'token', value: spec.auth.slice(7), type: 'string' }] };
  } // else: inherit the collection's bearer {{access_token}}
  const event = [];
  if (spec.pre) event.push({ listen: 'prerequest', script: { type: 'text/javascript', exec: spec.pre } });
  event.push({ listen: 'test', script: { type: 'text/javascript', exec: spec.test } });
  return { name: spec.name, event, request: req, response: [] };
}

function folder(name, description, items) {
  return { name, description, item: items.map(request) };
}

// ---------------------------------------------------------------------------------------------------------------
// The flow
// ---------------------------------------------------------------------------------------------------------------
const SIGNUP = 'Sign up (alias mobile_number)';

const auth = folder('Auth', 'Sign-up, one-time code login, password login and refresh-token rotation.', [
  {
    name: 'What this server is (GET /)',
    method: 'GET',
    path: '/',
    auth: 'none',
    description: 'Names the server and points at its docs, OpenAPI document and health probe.',
    test: lines(`
${statusTest(200).join('\n')}
const body = pm.response.json();
pm.test('name, version and links', () => {
    pm.expect(body).to.include.keys('name', 'version', 'docs', 'openapi', 'health');
    pm.expect(body.docs).to.eql('/docs');
});
`),
  },
  {
    name: SIGNUP,
    method: 'POST',
    path: '/auth/signup',
    auth: 'none',
    description: 'Creates an account for a fresh fictional number (+1 202-555-01xx, valid for `phonenumbers`). '
      + 'Sends the phone as `mobile_number`, an accepted alias of `phone`. On 409 `phone_taken` it picks another '
      + 'number and runs again (up to 20 times).',
    body: { mobile_number: '{{phone}}', name: 'Postman Tester', password: '{{password}}' },
    pre: lines(`
${SAVE.join('\n')}
// 202-555-0100..0199 are reserved fictional numbers: valid for phonenumbers, never a real subscriber.
const digits = String(Math.floor(Math.random() * 100)).padStart(2, '0');
save('phone', '+120255501' + digits);
if (!pm.variables.get('password')) { save('password', 'correct horse battery'); }
`),
    test: lines(`
${SAVE.join('\n')}
const attempts = Number(pm.collectionVariables.get('signup_attempts') || 0);
if (pm.response.code === 409 && attempts < 20) {
    pm.test('409 phone_taken: retrying with another number', () => {
        pm.expect(pm.response.json().error).to.eql('phone_taken');
    });
    pm.collectionVariables.set('signup_attempts', attempts + 1);
    postman.setNextRequest(${JSON.stringify(SIGNUP)});
} else {
    pm.collectionVariables.set('signup_attempts', 0);
${statusTest(201).map((l) => '    ' + l).join('\n')}
${schemaTest('SignupResponse').map((l) => '    ' + l).join('\n')}
    pm.test('user is the normalised phone, basic, with a password', () => {
        const user = pm.response.json().user;
        pm.expect(user.phone).to.eql(pm.variables.get('phone'));
        pm.expect(user.tier).to.eql('basic');
        pm.expect(user.has_password).to.eql(true);
        pm.expect(user.subscription.status).to.eql('none');
    });
    if (pm.response.code === 201) { save('user_id', pm.response.json().user.id); }
}
`),
  },
  {
    name: 'Send OTP',
    method: 'POST',
    path: '/auth/send-otp',
    auth: 'none',
    description: 'The development server runs with `OTP_DELIVERY=response`, so the code is in the answer; it is '
      + 'captured into `otp`. (With `log`/`twilio` delivery, set `otp` by hand.)',
    body: { phone: '{{phone}}', purpose: 'login' },
    test: lines(`
${SAVE.join('\n')}
${statusTest(200).join('\n')}
${schemaTest('OtpSent').join('\n')}
pm.test('otp is in the response (server runs with OTP_DELIVERY=response)', () => {
    pm.expect(pm.response.json().otp, 'start the server with OTP_DELIVERY=response').to.match(/^\\d{6}$/);
});
save('otp', pm.response.json().otp);
`),
  },
  {
    name: 'Verify OTP (alias code)',
    method: 'POST',
    path: '/auth/verify-otp',
    auth: 'none',
    description: 'Logs in with the code, sent as `code` (an alias of `otp`). Captures the tokens.',
    body: { phone: '{{phone}}', code: '{{otp}}' },
    test: lines(`
${SAVE.join('\n')}
${statusTest(200).join('\n')}
${schemaTest('Tokens').join('\n')}
const body = pm.response.json();
pm.test('token repeats access_token; user is ours', () => {
    pm.expect(body.token).to.eql(body.access_token);
    pm.expect(body.user.phone).to.eql(pm.variables.get('phone'));
    pm.expect(body.user.id).to.eql(Number(pm.variables.get('user_id')));
});
save('access_token', body.access_token);
save('refresh_token', body.refresh_token);
`),
  },
  {
    name: 'Verify the same OTP again (single use)',
    method: 'POST',
    path: '/auth/verify-otp',
    auth: 'none',
    description: 'A code works once: the second use is 400 `otp_invalid`.',
    body: { phone: '{{phone}}', otp: '{{otp}}' },
    test: errorTest(400, 'otp_invalid'),
  },
  {
    name: 'Log in with password',
    method: 'POST',
    path: '/auth/login',
    auth: 'none',
    description: 'Password login; captures the tokens.',
    body: { phone: '{{phone}}', password: '{{password}}' },
    test: lines(`
${SAVE.join('\n')}
${statusTest(200).join('\n')}
${schemaTest('Tokens').join('\n')}
const body = pm.response.json();
pm.test('token repeats access_token; has_password', () => {
    pm.expect(body.token).to.eql(body.access_token);
    pm.expect(body.user.has_password).to.eql(true);
});
save('access_token', body.access_token);
save('refresh_token', body.refresh_token);
`),
  },
  {
    name: 'Refresh tokens (rotation)',
    method: 'POST',
    path: '/auth/refresh',
    auth: 'bearer:{{refresh_token}}',
    description: 'The refresh token is the bearer token. The answer carries a new pair; the old refresh token is '
      + 'spent (replaying it would revoke the whole session family).',
    pre: lines(`
pm.collectionVariables.set('previous_refresh_token', pm.variables.get('refresh_token'));
`),
    test: lines(`
${SAVE.join('\n')}
${statusTest(200).join('\n')}
${schemaTest('Tokens').join('\n')}
const body = pm.response.json();
pm.test('the refresh token was rotated', () => {
    pm.expect(body.refresh_token).to.not.eql(pm.collectionVariables.get('previous_refresh_token'));
});
save('access_token', body.access_token);
save('refresh_token', body.refresh_token);
`),
  },
]);

const user = folder('User', 'The signed-in user and their quota.', [
  {
    name: 'Me',
    method: 'GET',
    path: '/user/me',
    description: 'The signed-in user with tier and subscription.',
    test: lines(`
${statusTest(200).join('\n')}
${schemaTest('User').join('\n')}
pm.test('it is the user who signed up', () => {
    const body = pm.response.json();
    pm.expect(body.id).to.eql(Number(pm.variables.get('user_id')));
    pm.expect(body.phone).to.eql(pm.variables.get('phone'));
    pm.expect(body.name).to.eql('Postman Tester');
});
`),
  },
  {
    name: 'Usage',
    method: 'GET',
    path: '/user/usage',
    description: "Today's messages against the tier's daily limit (UTC day), and the Gemini tokens your replies "
      + 'used today and this month.',
    test: lines(`
${SAVE.join('\n')}
${statusTest(200).join('\n')}
${schemaTest('Usage').join('\n')}
const body = pm.response.json();
pm.test('no tokens used yet, today or this month', () => {
    pm.expect(body.tokens_today).to.eql(0);
    pm.expect(body.tokens_this_month).to.eql(0);
});
pm.test('a new basic user has used nothing; remaining = limit - used', () => {
    pm.expect(body.tier).to.eql('basic');
    pm.expect(body.daily_limit).to.be.a('number').and.above(0);
    pm.expect(body.used_today).to.eql(0);
    pm.expect(body.remaining).to.eql(body.daily_limit - body.used_today);
});
pm.test('resets at the next UTC midnight', () => {
    pm.expect(body.resets_at).to.match(/T00:00:00(\\.0+)?(Z|\\+00:00)$/);
});
save('remaining_before', body.remaining);
`),
  },
]);

const chatrooms = folder('Chatrooms', 'The models a room may choose; create, list (cached per user, X-Cache), '
  + 'read, rename and tune a chatroom.', [
  {
    name: 'Models',
    method: 'GET',
    path: '/models',
    auth: 'none',
    description: 'The Gemini models a room may choose (GEMINI_MODELS) and the default, used by rooms whose '
      + '`model` is null. Captures `model`.',
    test: lines(`
${SAVE.join('\n')}
${statusTest(200).join('\n')}
const body = pm.response.json();
pm.test('a non-empty list whose first model is the default', () => {
    pm.expect(body.models).to.be.an('array').that.is.not.empty;
    pm.expect(body.default).to.eql(body.models[0]);
});
save('model', body.default);
`),
  },
  {
    name: 'Create chatroom with reply settings',
    method: 'POST',
    path: '/chatroom',
    description: 'A room with its own model, system instruction, temperature (0-2) and output length '
      + '(1-65536); null or absent: the server\'s setting or the model\'s default. 422 for a model not in GET /models.',
    body: { name: 'Tuned room', model: '{{model}}', system_instruction: 'Answer in one short paragraph.',
      temperature: 0.4, max_output_tokens: 512 },
    test: lines(`
${statusTest(201).join('\n')}
${schemaTest('Chatroom', 'tuned room').join('\n')}
pm.test('the room keeps its settings', () => {
    const body = pm.response.json();
    pm.expect(body.model).to.eql(pm.variables.get('model'));
    pm.expect(body.system_instruction).to.eql('Answer in one short paragraph.');
    pm.expect(body.temperature).to.eql(0.4);
    pm.expect(body.max_output_tokens).to.eql(512);
});
`),
  },
  {
    name: 'Create chatroom (alias title)',
    method: 'POST',
    path: '/chatroom',
    description: 'The name is sent as `title`, an accepted alias of `name`. Captures `chatroom_id`.',
    body: { title: '{{chatroom_name}}' },
    pre: lines(`
${SAVE.join('\n')}
save('chatroom_name', 'Postman room ' + Date.now());
`),
    test: lines(`
${SAVE.join('\n')}
${statusTest(201).join('\n')}
${schemaTest('Chatroom').join('\n')}
const body = pm.response.json();
pm.test('named as sent, empty', () => {
    pm.expect(body.name).to.eql(pm.variables.get('chatroom_name'));
    pm.expect(body.message_count).to.eql(0);
    pm.expect(body.last_message_at).to.eql(null);
});
save('chatroom_id', body.id);
`),
  },
  {
    name: 'List chatrooms',
    method: 'GET',
    path: '/chatroom',
    description: 'Newest activity first; answered with `X-Cache: HIT|MISS`.',
    test: lines(`
${statusTest(200).join('\n')}
${schemaTest('ChatroomList').join('\n')}
pm.test('X-Cache is HIT or MISS', () => {
    pm.expect(pm.response.headers.get('X-Cache')).to.be.oneOf(['HIT', 'MISS']);
});
pm.test('the new room is listed', () => {
    const ids = pm.response.json().chatrooms.map((room) => room.id);
    pm.expect(ids).to.include(Number(pm.variables.get('chatroom_id')));
});
`),
  },
  {
    name: 'List chatrooms again, trailing slash (cache HIT)',
    method: 'GET',
    path: '/chatroom/',
    description: '`/chatroom/` is the same route as `/chatroom` (no redirect); the list now comes from the cache.',
    test: lines(`
${statusTest(200).join('\n')}
${schemaTest('ChatroomList').join('\n')}
pm.test('X-Cache: HIT', () => pm.expect(pm.response.headers.get('X-Cache')).to.eql('HIT'));
`),
  },
  {
    name: 'Get chatroom',
    method: 'GET',
    path: '/chatroom/{{chatroom_id}}?limit=50',
    description: 'The room with its newest `limit` messages (oldest first) and `has_more`.',
    test: lines(`
${statusTest(200).join('\n')}
${schemaTest('ChatroomDetail').join('\n')}
pm.test('our room, no messages yet', () => {
    const body = pm.response.json();
    pm.expect(body.id).to.eql(Number(pm.variables.get('chatroom_id')));
    pm.expect(body.messages).to.eql([]);
    pm.expect(body.has_more).to.eql(false);
});
`),
  },
  {
    name: 'Rename chatroom',
    method: 'PATCH',
    path: '/chatroom/{{chatroom_id}}',
    description: 'Renames the room (canonical field `name`).',
    body: { name: '{{chatroom_name}}' },
    pre: lines(`
${SAVE.join('\n')}
save('chatroom_name', pm.variables.get('chatroom_name') + ' (renamed)');
`),
    test: lines(`
${statusTest(200).join('\n')}
${schemaTest('Chatroom').join('\n')}
pm.test('renamed', () => pm.expect(pm.response.json().name).to.eql(pm.variables.get('chatroom_name')));
`),
  },
  {
    name: 'List chatrooms after rename (never stale)',
    method: 'GET',
    path: '/chatroom',
    description: 'A rename drops the cached list: the new name shows at once.',
    test: lines(`
${statusTest(200).join('\n')}
${schemaTest('ChatroomList').join('\n')}
pm.test('X-Cache: MISS after the rename', () => pm.expect(pm.response.headers.get('X-Cache')).to.eql('MISS'));
pm.test('the list shows the new name', () => {
    const room = pm.response.json().chatrooms.find((r) => r.id === Number(pm.variables.get('chatroom_id')));
    pm.expect(room, 'room listed').to.be.an('object');
    pm.expect(room.name).to.eql(pm.variables.get('chatroom_name'));
});
`),
  },
]);

const RATE_HEADERS = lines(`
pm.test('X-RateLimit-Limit/Remaining/Reset are integers', () => {
    ['X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset'].forEach((name) => {
        pm.expect(pm.response.headers.get(name), name).to.match(/^\\d+$/);
    });
});
`);

const messages = folder('Messages', 'Post a message (202 + pending reply), long-poll, page, stream (SSE), retry '
  + 'and rate; regenerate and stop a reply, edit a question (a new branch) and switch back to the first branch.', [
  {
    name: 'Post message (alias message)',
    method: 'POST',
    path: '/chatroom/{{chatroom_id}}/message',
    description: 'The text is sent as `message`, an accepted alias of `content`, with an `Idempotency-Key`. '
      + '202 with the stored user message and its pending reply; captures `message_id` and `reply_id`.',
    headers: [{ key: 'Idempotency-Key', value: '{{idempotency_key}}' }],
    body: { message: 'Hello from Postman! Say hi back in five words.' },
    pre: lines(`
${SAVE.join('\n')}
save('idempotency_key', 'postman-' + Date.now() + '-' + Math.random().toString(36).slice(2));
`),
    test: lines(`
${SAVE.join('\n')}
${statusTest(202).join('\n')}
${schemaTest('PostedMessage').join('\n')}
const body = pm.response.json();
pm.test('user message stored, reply pending', () => {
    const room = Number(pm.variables.get('chatroom_id'));
    pm.expect(body.message.role).to.eql('user');
    pm.expect(body.message.status).to.eql('complete');
    pm.expect(body.message.content).to.eql('Hello from Postman! Say hi back in five words.');
    pm.expect(body.message.chatroom_id).to.eql(room);
    pm.expect(body.reply.role).to.eql('model');
    pm.expect(body.reply.status).to.eql('pending');
    pm.expect(body.reply.reply_to).to.eql(body.message.id);
    pm.expect(body.reply.chatroom_id).to.eql(room);
});
${RATE_HEADERS.join('\n')}
pm.test('X-RateLimit-Remaining counts this message', () => {
    const before = Number(pm.variables.get('remaining_before'));
    pm.expect(Number(pm.response.headers.get('X-RateLimit-Remaining'))).to.eql(before - 1);
});
save('message_id', body.message.id);
save('reply_id', body.reply.id);
save('remaining_after_post', pm.response.headers.get('X-RateLimit-Remaining'));
`),
  },
  {
    name: 'Post the same message again (Idempotency-Key replay)',
    method: 'POST',
    path: '/chatroom/{{chatroom_id}}/message',
    description: 'Same key, same body: the first response comes back; nothing new is created, no quota is used.',
    headers: [{ key: 'Idempotency-Key', value: '{{idempotency_key}}' }],
    body: { message: 'Hello from Postman! Say hi back in five words.' },
    test: lines(`
${statusTest(202).join('\n')}
${schemaTest('PostedMessage').join('\n')}
pm.test('the same message and reply ids', () => {
    const body = pm.response.json();
    pm.expect(body.message.id).to.eql(Number(pm.variables.get('message_id')));
    pm.expect(body.reply.id).to.eql(Number(pm.variables.get('reply_id')));
});
${RATE_HEADERS.join('\n')}
pm.test('no extra quota used', () => {
    // Not lower than after the first post (it may be higher: a reply that ended failed gave its unit back).
    const afterPost = Number(pm.variables.get('remaining_after_post'));
    pm.expect(Number(pm.response.headers.get('X-RateLimit-Remaining'))).to.be.at.least(afterPost);
});
`),
  },
  {
    name: 'Get reply (long-poll ?wait=5)',
    method: 'GET',
    path: '/chatroom/{{chatroom_id}}/message/{{reply_id}}?wait=5',
    description: 'Answers when the reply is no longer pending, or after 5 s. Without GEMINI_API_KEY it ends '
      + '`failed` with `ai_not_configured`; with a key, `complete`.',
    test: lines(`
${statusTest(200).join('\n')}
${schemaTest('Message').join('\n')}
const body = pm.response.json();
pm.test('it is our reply and it has finished', () => {
    pm.expect(body.id).to.eql(Number(pm.variables.get('reply_id')));
    pm.expect(body.reply_to).to.eql(Number(pm.variables.get('message_id')));
    pm.expect(body.role).to.eql('model');
    pm.expect(body.status, 'is the worker (flask worker) running?').to.be.oneOf(['complete', 'failed', 'blocked']);
    pm.expect(body.completed_at).to.be.a('string');
});
pm.test('complete has text and no error; failed/blocked has {code, message}', () => {
    if (body.status === 'complete') {
        pm.expect(body.error).to.eql(null);
        pm.expect(body.content).to.not.be.empty;
    } else {
        pm.expect(body.error).to.be.an('object').with.all.keys('code', 'message');
    }
});
`),
  },
  {
    name: 'List messages (page)',
    method: 'GET',
    path: '/chatroom/{{chatroom_id}}/messages?limit=10',
    description: 'The newest `limit` messages, oldest first, and `has_more`.',
    test: lines(`
${statusTest(200).join('\n')}
${schemaTest('MessagePage').join('\n')}
pm.test('the user message then its reply, oldest first', () => {
    const body = pm.response.json();
    const ids = body.messages.map((m) => m.id);
    pm.expect(ids).to.eql([Number(pm.variables.get('message_id')), Number(pm.variables.get('reply_id'))]);
    pm.expect(body.has_more).to.eql(false);
});
`),
  },
  {
    name: 'List messages after the user message',
    method: 'GET',
    path: '/chatroom/{{chatroom_id}}/messages?after={{message_id}}&limit=10',
    description: '`after` (or `before`) a message id pages through a long room.',
    test: lines(`
${statusTest(200).join('\n')}
${schemaTest('MessagePage').join('\n')}
pm.test('only the reply', () => {
    const ids = pm.response.json().messages.map((m) => m.id);
    pm.expect(ids).to.eql([Number(pm.variables.get('reply_id'))]);
});
`),
  },
  {
    name: 'Stream reply (SSE)',
    method: 'GET',
    path: '/chatroom/{{chatroom_id}}/message/{{reply_id}}/stream',
    headers: [{ key: 'Accept', value: 'text/event-stream' }],
    description: 'Server-Sent Events: `delta` {text} events, then `done` (or `error` when the reply ended '
      + 'failed/blocked) with the stored Message. The reply has finished, so the stream ends at once. Without a '
      + 'Gemini key it ends with `event: error`.',
    test: lines(`
${statusTest(200).join('\n')}
pm.test('Content-Type is text/event-stream', () => {
    pm.expect(pm.response.headers.get('Content-Type')).to.include('text/event-stream');
});
// Parse the events: blocks separated by a blank line; lines "event: x", "data: y", "id: z", ": comment".
const events = pm.response.text().split(/\\r?\\n\\r?\\n/).map((block) => {
    const event = { event: 'message', data: [] };
    block.split(/\\r?\\n/).forEach((line) => {
        const match = /^(event|data|id): ?(.*)$/.exec(line);
        if (!match) { return; }
        if (match[1] === 'data') { event.data.push(match[2]); } else { event[match[1]] = match[2]; }
    });
    return event;
}).filter((event) => event.data.length);
pm.test('ends with one done or error event carrying our reply', () => {
    pm.expect(events.length).to.be.above(0);
    const last = events[events.length - 1];
    pm.expect(last.event).to.be.oneOf(['done', 'error']);
    const message = JSON.parse(last.data.join('\\n'));
    pm.expect(message.id).to.eql(Number(pm.variables.get('reply_id')));
    pm.expect(message.role).to.eql('model');
    pm.expect(message.status).to.eql(last.event === 'done' ? 'complete' : message.status);
    if (last.event === 'error') { pm.expect(message.status).to.be.oneOf(['failed', 'blocked']); }
});
pm.test('every delta carries {text}', () => {
    events.filter((e) => e.event === 'delta').forEach((e) => {
        pm.expect(JSON.parse(e.data.join('\\n')).text).to.be.a('string');
    });
});
`),
  },
  {
    name: 'Retry reply',
    method: 'POST',
    path: '/chatroom/{{chatroom_id}}/message/{{reply_id}}/retry',
    description: '202 with the reply pending again when it had ended failed/blocked (no quota used); 409 '
      + '`not_retryable` when it is complete.',
    test: lines(`
${statusTest(202, 409).join('\n')}
if (pm.response.code === 202) {
${schemaTest('Message', 'retried reply').map((l) => '    ' + l).join('\n')}
    pm.test('the same reply, pending again', () => {
        const body = pm.response.json();
        pm.expect(body.id).to.eql(Number(pm.variables.get('reply_id')));
        pm.expect(body.status).to.eql('pending');
        pm.expect(body.error).to.eql(null);
    });
} else {
    pm.test('409 not_retryable', () => pm.expect(pm.response.json().error).to.eql('not_retryable'));
}
`),
  },
  {
    name: 'Rate reply',
    method: 'PUT',
    path: '/chatroom/{{chatroom_id}}/message/{{reply_id}}/feedback',
    body: { rating: 'up', comment: 'Exactly what I needed.' },
    description: '200 with the reply and its `feedback` {rating, comment, updated_at}; `rating` is up, down or '
      + 'null (null with no comment takes the feedback back). 409 `not_a_reply` on a user message.',
    test: lines(`
${statusTest(200).join('\n')}
${schemaTest('Message', 'rated reply').join('\n')}
pm.test('the reply carries the rating and the comment', () => {
    const body = pm.response.json();
    pm.expect(body.id).to.eql(Number(pm.variables.get('reply_id')));
    pm.expect(body.feedback.rating).to.eql('up');
    pm.expect(body.feedback.comment).to.eql('Exactly what I needed.');
});
`),
  },
  {
    name: 'Get retried reply (long-poll ?wait=5)',
    method: 'GET',
    path: '/chatroom/{{chatroom_id}}/message/{{reply_id}}?wait=5',
    description: 'Waits for the retried reply to end: a user message has one reply in progress at most, so a '
      + 'regeneration is refused (409 `reply_in_progress`) while it is still being written.',
    test: lines(`
${statusTest(200).join('\n')}
${schemaTest('Message').join('\n')}
pm.test('our reply, finished', () => {
    const body = pm.response.json();
    pm.expect(body.id).to.eql(Number(pm.variables.get('reply_id')));
    pm.expect(body.status, 'is the worker (flask worker) running?').to.be.oneOf(['complete', 'failed', 'blocked']);
});
`),
  },
  {
    name: 'Regenerate reply',
    method: 'POST',
    path: '/chatroom/{{chatroom_id}}/message/{{reply_id}}/regenerate',
    description: '202 with a new pending reply to the same user message (given the reply or the user message), '
      + 'beside the earlier one: they are siblings (`sibling_ids`), and the new one becomes the room\'s active '
      + 'leaf. Uses one quota unit (unlike retry); 409 `reply_in_progress` while a reply to the message is '
      + 'pending. Captures the first reply as `first_reply_id` and the new one as `reply_id`.',
    test: lines(`
${SAVE.join('\n')}
${statusTest(202).join('\n')}
${schemaTest('Message', 'regenerated reply').join('\n')}
const body = pm.response.json();
pm.test('a new pending reply to the same user message', () => {
    const question = Number(pm.variables.get('message_id'));
    pm.expect(body.id).to.not.eql(Number(pm.variables.get('reply_id')));
    pm.expect(body.role).to.eql('model');
    pm.expect(body.status).to.eql('pending');
    pm.expect(body.reply_to).to.eql(question);
    pm.expect(body.parent_id).to.eql(question);
});
${RATE_HEADERS.join('\n')}
if (pm.response.code === 202) {
    save('first_reply_id', pm.variables.get('reply_id'));
    save('reply_id', body.id);
}
`),
  },
  {
    name: 'Stop reply',
    method: 'POST',
    path: '/chatroom/{{chatroom_id}}/message/{{reply_id}}/stop',
    description: 'Stops the regenerated reply: 200 with it ended `stopped` and the text generated so far (empty, '
      + 'and its quota unit given back, when Gemini had not been called). The reply may already have ended '
      + '(without GEMINI_API_KEY it fails at once): 409 `not_stoppable`, or 200 with the outcome the attempt reached '
      + 'first. 202 (still pending) when the attempt running it had not reached its next chunk within 5 s.',
    test: lines(`
${statusTest(200, 202, 409).join('\n')}
const body = pm.response.json();
if (pm.response.code === 409) {
    pm.test('409 not_stoppable: the reply had already ended', () => pm.expect(body.error).to.eql('not_stoppable'));
} else {
${schemaTest('Message', 'stopped reply').map((l) => '    ' + l).join('\n')}
    pm.test('our reply: ended (200) or still ending (202)', () => {
        pm.expect(body.id).to.eql(Number(pm.variables.get('reply_id')));
        pm.expect(body.role).to.eql('model');
        if (pm.response.code === 202) {
            pm.expect(body.status).to.eql('pending');
        } else {
            pm.expect(body.status).to.be.oneOf(['stopped', 'complete', 'failed', 'blocked']);
            pm.expect(body.completed_at).to.be.a('string');
        }
    });
    pm.test('a stopped reply keeps the text so far, with no error', () => {
        if (body.status === 'stopped') {
            pm.expect(body.error).to.eql(null);
            pm.expect(body.content).to.be.a('string');
        }
    });
}
`),
  },
  {
    name: 'Edit first question',
    method: 'POST',
    path: '/chatroom/{{chatroom_id}}/message',
    description: 'Editing is posting under an earlier parent: `parent_id` null puts the new text beside the room\'s '
      + 'first question (`parent_id` a reply: after that reply; absent: after the active leaf). 202 with the new '
      + 'user message and its pending reply, a new branch that becomes the active one. Uses one quota unit. '
      + 'Captures `edited_message_id` and `edited_reply_id`.',
    body: { content: 'Hello again from Postman! Say hi back in three words.', parent_id: null },
    test: lines(`
${SAVE.join('\n')}
${statusTest(202).join('\n')}
${schemaTest('PostedMessage').join('\n')}
const body = pm.response.json();
pm.test('a new first question with its pending reply', () => {
    pm.expect(body.message.id).to.not.eql(Number(pm.variables.get('message_id')));
    pm.expect(body.message.role).to.eql('user');
    pm.expect(body.message.parent_id).to.eql(null);
    pm.expect(body.message.content).to.eql('Hello again from Postman! Say hi back in three words.');
    pm.expect(body.reply.status).to.eql('pending');
    pm.expect(body.reply.reply_to).to.eql(body.message.id);
    pm.expect(body.reply.parent_id).to.eql(body.message.id);
});
${RATE_HEADERS.join('\n')}
save('edited_message_id', body.message.id);
save('edited_reply_id', body.reply.id);
`),
  },
  {
    name: 'Get the edited question\'s reply (long-poll ?wait=5)',
    method: 'GET',
    path: '/chatroom/{{chatroom_id}}/message/{{edited_reply_id}}?wait=5',
    description: 'The new branch is answered like any post; the history Gemini gets is that branch alone (the '
      + 'edited question, not the one it replaced).',
    test: lines(`
${statusTest(200).join('\n')}
${schemaTest('Message').join('\n')}
pm.test('the edited question\\'s reply, finished', () => {
    const body = pm.response.json();
    pm.expect(body.id).to.eql(Number(pm.variables.get('edited_reply_id')));
    pm.expect(body.parent_id).to.eql(Number(pm.variables.get('edited_message_id')));
    pm.expect(body.status, 'is the worker (flask worker) running?').to.be.oneOf(['complete', 'failed', 'blocked']);
});
`),
  },
  {
    name: 'Switch branch',
    method: 'PUT',
    path: '/chatroom/{{chatroom_id}}/active-leaf',
    rawBody: '{\n  "message_id": {{first_reply_id}}\n}',
    description: 'Makes the branch through a message the active one (it continues to that message\'s newest '
      + 'descendant): back to the first question and its first reply. 200 with the room along that branch; each '
      + 'message lists its `sibling_ids` (itself included, oldest first), so a client can show "1 / 2".',
    test: lines(`
${statusTest(200).join('\n')}
${schemaTest('ChatroomDetail').join('\n')}
const body = pm.response.json();
const first = Number(pm.variables.get('first_reply_id'));
pm.test('the first reply is the active leaf; the branch is the first question and that reply', () => {
    pm.expect(body.active_leaf_id).to.eql(first);
    pm.expect(body.messages.map((m) => m.id)).to.eql([Number(pm.variables.get('message_id')), first]);
});
pm.test('siblings: the edited question beside the first, the regenerated reply beside the first reply', () => {
    pm.expect(body.messages[0].sibling_ids).to.eql(
        [Number(pm.variables.get('message_id')), Number(pm.variables.get('edited_message_id'))]);
    pm.expect(body.messages[1].sibling_ids).to.eql([first, Number(pm.variables.get('reply_id'))]);
});
`),
  },
]);

const PIXEL = 'postman/fixtures/pixel.png';  // 70 bytes: a 1x1 PNG, committed beside this script

const filesAndData = folder('Files and your data', 'Upload a file and ask about it, search your messages, export a '
  + 'room and everything stored about you, share a room by link (read without a token) and revoke it; a file a '
  + 'message uses cannot be deleted.', [
  {
    name: 'Upload a file',
    method: 'POST',
    path: '/files',
    formData: [{ key: 'file', type: 'file', src: PIXEL, contentType: 'image/png' }],
    description: 'multipart/form-data with the file in the field `file` (PNG, JPEG, WEBP, HEIC, GIF, PDF, text or '
      + 'Markdown; the type is read from the bytes). 201 with its metadata; 200 with the file stored then when you '
      + 'had already uploaded the same bytes. Captures `file_id`.\n\n'
      + `The file is \`${PIXEL}\` of the repository: newman (postman/run.sh) runs from the repository root. In `
      + 'the Postman app, choose a small image for the `file` part (or put the repository root as its working '
      + 'directory).',
    test: lines(`
${SAVE.join('\n')}
${statusTest(201, 200).join('\n')}
${schemaTest('File').join('\n')}
const body = pm.response.json();
pm.test('the PNG, by its name, type and size', () => {
    pm.expect(body.name).to.eql('pixel.png');
    pm.expect(body.mime_type).to.eql('image/png');
    pm.expect(body.size).to.eql(70);
});
save('file_id', body.id);
`),
  },
  {
    name: 'Ask about the file',
    method: 'POST',
    path: '/chatroom/{{chatroom_id}}/message',
    rawBody: '{\n  "content": "What is in this picture?",\n  "attachment_ids": [{{file_id}}]\n}',
    description: '`attachment_ids`: up to 10 of your files, sent to Gemini with the message (and with later ones '
      + 'while they fit the history budget). 202 with the user message, which lists its `attachments` '
      + '{id, name, mime_type, size}, and its pending reply, after the active leaf (the first branch). Uses one '
      + 'quota unit. Captures `file_message_id` and `file_reply_id`.',
    test: lines(`
${SAVE.join('\n')}
${statusTest(202).join('\n')}
${schemaTest('PostedMessage').join('\n')}
const body = pm.response.json();
pm.test('the question lists the file; its reply is pending', () => {
    pm.expect(body.message.content).to.eql('What is in this picture?');
    pm.expect(body.message.attachments).to.eql([
        { id: Number(pm.variables.get('file_id')), name: 'pixel.png', mime_type: 'image/png', size: 70 }]);
    pm.expect(body.message.parent_id).to.eql(Number(pm.variables.get('first_reply_id')));
    pm.expect(body.reply.status).to.eql('pending');
    pm.expect(body.reply.reply_to).to.eql(body.message.id);
    pm.expect(body.reply.attachments).to.eql([]);
});
${RATE_HEADERS.join('\n')}
save('file_message_id', body.message.id);
save('file_reply_id', body.reply.id);
`),
  },
  {
    name: 'Get the reply about the file (long-poll ?wait=5)',
    method: 'GET',
    path: '/chatroom/{{chatroom_id}}/message/{{file_reply_id}}?wait=5',
    description: 'As "Get reply": answers when the reply has ended, or after 5 s.',
    test: lines(`
${statusTest(200).join('\n')}
${schemaTest('Message').join('\n')}
pm.test('the reply about the file, finished', () => {
    const body = pm.response.json();
    pm.expect(body.id).to.eql(Number(pm.variables.get('file_reply_id')));
    pm.expect(body.reply_to).to.eql(Number(pm.variables.get('file_message_id')));
    pm.expect(body.status, 'is the worker (flask worker) running?').to.be.oneOf(['complete', 'failed', 'blocked']);
});
`),
  },
  {
    name: 'Get the question with its file',
    method: 'GET',
    path: '/chatroom/{{chatroom_id}}/message/{{file_message_id}}',
    description: 'A user message read back lists its attachments too.',
    test: lines(`
${statusTest(200).join('\n')}
${schemaTest('Message').join('\n')}
pm.test('attachments: the file', () => {
    const body = pm.response.json();
    pm.expect(body.id).to.eql(Number(pm.variables.get('file_message_id')));
    pm.expect(body.attachments.map((a) => a.id)).to.eql([Number(pm.variables.get('file_id'))]);
});
`),
  },
  {
    name: 'Search',
    method: 'GET',
    path: '/search?q=postman',
    description: 'Your messages that match, best first, in every room and every branch: words (all must match), '
      + '"quoted phrases", OR, -word. Each result has a `snippet`, HTML-escaped, with the matches in <mark>...</mark>. '
      + 'Page on with `before` = `next_before`.',
    test: lines(`
${statusTest(200).join('\n')}
${schemaTest('SearchPage').join('\n')}
const body = pm.response.json();
pm.test('the first question is found, with the word marked', () => {
    const hit = body.results.find((r) => r.message_id === Number(pm.variables.get('message_id')));
    pm.expect(hit, 'the first question is a result').to.be.an('object');
    pm.expect(hit.chatroom_id).to.eql(Number(pm.variables.get('chatroom_id')));
    pm.expect(hit.chatroom_name).to.eql(pm.variables.get('chatroom_name'));
    pm.expect(hit.role).to.eql('user');
    pm.expect(hit.snippet).to.match(/<mark>postman<\\/mark>/i);
});
pm.test('every result marks a match', () => {
    pm.expect(body.results).to.not.be.empty;
    body.results.forEach((r) => pm.expect(r.snippet).to.include('<mark>'));
});
`),
  },
  {
    name: 'Export room as Markdown',
    method: 'GET',
    path: '/chatroom/{{chatroom_id}}/export?format=markdown',
    description: 'The active branch to read, as a text/markdown download: the room name as the title, then each '
      + 'turn under a heading. `format=json` (the default) downloads the whole message tree.',
    test: lines(`
${statusTest(200).join('\n')}
pm.test('a text/markdown download', () => {
    pm.expect(pm.response.headers.get('Content-Type')).to.include('text/markdown');
    pm.expect(pm.response.headers.get('Content-Disposition')).to.match(/^attachment; filename=".+\\.md"$/);
});
pm.test('a Markdown document titled with the room, with the question about the file', () => {
    const textBody = pm.response.text();
    pm.expect(textBody.startsWith('#'), textBody.slice(0, 80)).to.eql(true);
    pm.expect(textBody.split('\\n')[0]).to.include(pm.variables.get('chatroom_name'));
    pm.expect(textBody).to.include('What is in this picture?');
});
`),
  },
  {
    name: 'Export my data',
    method: 'GET',
    path: '/user/export',
    description: 'Everything stored about you as one JSON download: profile, subscription, usage, file metadata '
      + '(no bytes), share links and every room with its whole message tree.',
    test: lines(`
${statusTest(200).join('\n')}
pm.test('a JSON download', () => {
    pm.expect(pm.response.headers.get('Content-Type')).to.include('application/json');
    pm.expect(pm.response.headers.get('Content-Disposition')).to.match(/^attachment; filename=".+\\.json"$/);
});
const body = pm.response.json();
pm.test('exported_at, user, subscription, usage, files, shares, chatrooms', () => {
    pm.expect(body).to.have.all.keys('exported_at', 'user', 'subscription', 'usage', 'files', 'shares', 'chatrooms');
});
pm.test('it is ours: the user, the file (no bytes) and the room with every message', () => {
    pm.expect(body.user.id).to.eql(Number(pm.variables.get('user_id')));
    const file = body.files.find((f) => f.id === Number(pm.variables.get('file_id')));
    pm.expect(file, 'the file is listed').to.be.an('object');
    pm.expect(file).to.not.have.property('data');
    const room = body.chatrooms.find((r) => r.id === Number(pm.variables.get('chatroom_id')));
    pm.expect(room, 'the room is listed').to.be.an('object');
    const ids = room.messages.map((m) => m.id);
    ['message_id', 'first_reply_id', 'edited_message_id', 'file_message_id'].forEach((name) => {
        pm.expect(ids, name).to.include(Number(pm.variables.get(name)));
    });
});
`),
  },
  {
    name: 'Share room',
    method: 'POST',
    path: '/chatroom/{{chatroom_id}}/shares',
    description: 'A read-only snapshot of the active branch as it is now, behind an unguessable link anyone may '
      + 'read (later messages, other branches, attachments, ratings and token counts are not shared). 201 with '
      + '{id, url, created_at}; captures `share_id`.',
    test: lines(`
${SAVE.join('\n')}
${statusTest(201).join('\n')}
${schemaTest('Share').join('\n')}
const body = pm.response.json();
pm.test('url is GET /shared/{id}', () => pm.expect(body.url.endsWith('/shared/' + body.id)).to.eql(true));
save('share_id', body.id);
`),
  },
  {
    name: 'Open share without a token',
    method: 'GET',
    path: '/shared/{{share_id}}',
    auth: 'none',
    description: 'The snapshot behind the link, no token needed: the room name then and its active branch, with '
      + '`X-Robots-Tag: noindex`.',
    test: lines(`
${statusTest(200).join('\n')}
${schemaTest('SharedSnapshot').join('\n')}
const body = pm.response.json();
pm.test('the room name and its active branch: the first question, its first reply, the question about the file', () => {
    pm.expect(body.chatroom_name).to.eql(pm.variables.get('chatroom_name'));
    const ids = body.messages.map((m) => m.id);
    pm.expect(ids.slice(0, 3)).to.eql(['message_id', 'first_reply_id', 'file_message_id']
        .map((name) => Number(pm.variables.get(name))));
});
pm.test('not for search engines', () => pm.expect(pm.response.headers.get('X-Robots-Tag')).to.include('noindex'));
`),
  },
  {
    name: 'Revoke share',
    method: 'DELETE',
    path: '/chatroom/{{chatroom_id}}/shares/{{share_id}}',
    description: '204: the link answers 404 from now on.',
    test: lines(`
${statusTest(204).join('\n')}
pm.test('no body', () => pm.expect(pm.response.text()).to.eql(''));
`),
  },
  {
    name: 'Shared link after revoke',
    method: 'GET',
    path: '/shared/{{share_id}}',
    auth: 'none',
    description: 'A revoked link (or one whose room was deleted) is 404 `share_not_found`.',
    test: errorTest(404, 'share_not_found'),
  },
  {
    name: 'Delete file in use',
    method: 'DELETE',
    path: '/files/{{file_id}}',
    description: 'A file a message uses stays: 409 `file_in_use` (deleting the room frees it). A file no message '
      + 'uses is deleted: 204.',
    test: errorTest(409, 'file_in_use'),
  },
]);

const subscription = folder('Subscription', 'Tier and Stripe status, Checkout and the Billing Portal. Without '
  + 'STRIPE_SECRET_KEY the Stripe routes answer 503 `billing_unavailable`.', [
  {
    name: 'Subscription status',
    method: 'GET',
    path: '/subscription/status',
    description: 'The tier and Stripe subscription state (`none` when never subscribed).',
    test: lines(`
${statusTest(200).join('\n')}
${schemaTest('Subscription').join('\n')}
pm.test('basic, never subscribed', () => {
    const body = pm.response.json();
    pm.expect(body.tier).to.eql('basic');
    pm.expect(body.status).to.eql('none');
    pm.expect(body.cancel_at_period_end).to.eql(false);
});
`),
  },
  {
    name: 'Subscription status (alias /subscribe/status)',
    method: 'GET',
    path: '/subscribe/status',
    description: 'The older path of the same route.',
    test: lines(`
${statusTest(200).join('\n')}
${schemaTest('Subscription').join('\n')}
pm.test('basic', () => pm.expect(pm.response.json().tier).to.eql('basic'));
`),
  },
  {
    name: 'Subscribe to Pro',
    method: 'POST',
    path: '/subscribe/pro',
    description: '200 {checkout_url, url, session_id} with Stripe configured; 503 `billing_unavailable` without.',
    test: lines(`
${statusTest(200, 503).join('\n')}
if (pm.response.code === 200) {
${schemaTest('Checkout', 'checkout').map((l) => '    ' + l).join('\n')}
    pm.test('url repeats checkout_url', () => {
        const body = pm.response.json();
        pm.expect(body.url).to.eql(body.checkout_url);
    });
} else {
    pm.test('503 billing_unavailable (Stripe not configured) with the error shape', () => {
        const body = pm.response.json();
        pm.expect(body).to.include.all.keys('code', 'status', 'error', 'message');
        pm.expect(body.code).to.eql(503);
        pm.expect(body.error).to.be.oneOf(['billing_unavailable', 'billing_unreachable']);
        pm.expect(body.message).to.be.a('string').and.not.empty;
    });
}
`),
  },
  {
    name: 'Billing portal (alias /subscription/portal)',
    method: 'POST',
    path: '/subscription/portal',
    description: '200 {url} for a user with a Stripe customer; 409 `no_billing_account` before any checkout; '
      + '503 when Stripe is not configured.',
    test: lines(`
${statusTest(200, 409, 503).join('\n')}
if (pm.response.code === 200) {
${schemaTest('Portal', 'portal').map((l) => '    ' + l).join('\n')}
} else {
    pm.test('error is no_billing_account (409) or billing_unavailable (503)', () => {
        const body = pm.response.json();
        pm.expect(body).to.include.all.keys('code', 'status', 'error', 'message');
        pm.expect(body.code).to.eql(pm.response.code);
        pm.expect(body.error).to.eql(pm.response.code === 409 ? 'no_billing_account' : 'billing_unavailable');
    });
}
`),
  },
]);

const webhook = folder('Webhook', "Stripe's webhook never accepts an unsigned event.", [
  {
    name: 'Stripe webhook without signature',
    method: 'POST',
    path: '/webhook/stripe',
    auth: 'none',
    description: 'No `Stripe-Signature`: 400 `invalid_signature` when STRIPE_WEBHOOK_SECRET is set, 503 '
      + '`webhook_not_configured` when it is not. Never 200.',
    body: { id: 'evt_postman_unsigned', object: 'event', type: 'checkout.session.completed', data: { object: {} } },
    test: lines(`
${statusTest(400, 503).join('\n')}
pm.test('error shape with invalid_signature (400) or webhook_not_configured (503)', () => {
    const body = pm.response.json();
    pm.expect(body).to.include.all.keys('code', 'status', 'error', 'message');
    pm.expect(body.code).to.eql(pm.response.code);
    pm.expect(body.error).to.eql(pm.response.code === 400 ? 'invalid_signature' : 'webhook_not_configured');
});
`),
  },
]);

const errors = folder('Errors', 'Every non-2xx answer has the shape {code, status, error, message, errors?}: '
  + 'a sample of causes.', [
  {
    name: 'Unknown route → 404',
    method: 'GET',
    path: '/no/such/route',
    auth: 'none',
    description: 'JSON, not an HTML page.',
    test: errorTest(404, 'not_found'),
  },
  {
    name: 'Malformed JSON → 400',
    method: 'POST',
    path: '/chatroom',
    rawBody: '{"name": "unterminated',
    description: 'A body that is not valid JSON.',
    test: errorTest(400, 'invalid_json'),
  },
  {
    name: 'Missing token → 401',
    method: 'GET',
    path: '/user/me',
    auth: 'none',
    description: 'No Authorization header.',
    test: errorTest(401, 'token_missing'),
  },
  {
    name: 'Invalid token → 401',
    method: 'GET',
    path: '/user/me',
    auth: 'bearer:not-a-jwt',
    description: 'A bearer token that is not a JWT.',
    test: errorTest(401, 'token_invalid'),
  },
  {
    name: 'Wrong method → 405',
    method: 'PUT',
    path: '/user/me',
    description: 'The route exists, the method does not.',
    test: errorTest(405, 'method_not_allowed'),
  },
  {
    name: 'Not JSON → 415',
    method: 'POST',
    path: '/chatroom',
    rawBody: 'name=form-post',
    contentType: 'application/x-www-form-urlencoded',
    description: 'A form post is refused before parsing.',
    test: errorTest(415, 'unsupported_media_type'),
  },
  {
    name: 'Invalid phone → 422 with errors',
    method: 'POST',
    path: '/auth/signup',
    auth: 'none',
    body: { phone: 'not a phone number' },
    description: 'Field validation: 422 and `errors` per location and field.',
    test: lines(`
${errorTest(422, 'validation_error').join('\n')}
pm.test('errors.json.phone lists the problem', () => {
    const body = pm.response.json();
    pm.expect(body.errors).to.be.an('object');
    pm.expect(body.errors.json.phone).to.be.an('array').that.is.not.empty;
});
`),
  },
  {
    name: 'Unknown chatroom → 404',
    method: 'GET',
    path: '/chatroom/987654321',
    description: "Unknown and other users' rooms are both 404 (never 403).",
    test: errorTest(404, ['chatroom_not_found', 'not_found']),
  },
]);

const teardown = folder('Teardown', 'Change the password, log out, log back in, delete the room.', [
  {
    name: 'Change password (aliases old_password, newPassword)',
    method: 'POST',
    path: '/auth/change-password',
    description: '`old_password` and `newPassword` are accepted aliases of `current_password` and `new_password`. '
      + 'Every other session is revoked; this one goes on, and the answer carries its fresh pair, captured here.',
    body: { old_password: '{{password}}', newPassword: '{{new_password}}' },
    pre: lines(`
${SAVE.join('\n')}
save('new_password', 'new battery staple ' + Math.random().toString(36).slice(2, 8));
pm.collectionVariables.set('previous_access_token', pm.variables.get('access_token'));
pm.collectionVariables.set('previous_refresh_token', pm.variables.get('refresh_token'));
`),
    test: lines(`
${SAVE.join('\n')}
${statusTest(200).join('\n')}
${schemaTest('PasswordChanged').join('\n')}
const body = pm.response.json();
pm.test('a fresh token pair', () => {
    pm.expect(body.access_token).to.not.eql(pm.collectionVariables.get('previous_access_token'));
    pm.expect(body.token).to.eql(body.access_token);
});
save('access_token', body.access_token);
save('refresh_token', body.refresh_token);
save('password', pm.variables.get('new_password'));
`),
  },
  {
    name: 'Access token from before the password change still works',
    method: 'GET',
    path: '/user/me',
    auth: 'bearer:{{previous_access_token}}',
    description: 'The calling session goes on after a password change: its access token works until it expires.',
    test: lines(`
${statusTest(200).join('\n')}
`),
  },
  {
    name: 'Refresh token from before the password change is refused',
    method: 'POST',
    path: '/auth/refresh',
    auth: 'bearer:{{previous_refresh_token}}',
    description: "The calling session's refresh token was replaced by the fresh one.",
    test: errorTest(401, 'token_revoked'),
  },
  {
    name: 'Log out',
    method: 'POST',
    path: '/auth/logout',
    description: "Revokes this session's tokens (`{\"all\": true}` would revoke every token of the user).",
    body: { all: false },
    pre: lines(`
pm.collectionVariables.set('logged_out_token', pm.variables.get('access_token'));
`),
    test: lines(`
${statusTest(200).join('\n')}
${schemaTest('MessageOnly').join('\n')}
`),
  },
  {
    name: 'Token refused after logout',
    method: 'GET',
    path: '/user/me',
    auth: 'bearer:{{logged_out_token}}',
    description: 'The logged-out access token stops working at once.',
    test: errorTest(401, 'token_revoked'),
  },
  {
    name: 'Log in with the new password',
    method: 'POST',
    path: '/auth/login',
    auth: 'none',
    description: 'The new password works (and a new session is needed to delete the room).',
    body: { phone: '{{phone}}', password: '{{password}}' },
    test: lines(`
${SAVE.join('\n')}
${statusTest(200).join('\n')}
${schemaTest('Tokens').join('\n')}
const body = pm.response.json();
save('access_token', body.access_token);
save('refresh_token', body.refresh_token);
`),
  },
  {
    name: 'Delete chatroom',
    method: 'DELETE',
    path: '/chatroom/{{chatroom_id}}',
    description: '204; its messages go too.',
    test: lines(`
${statusTest(204).join('\n')}
pm.test('no body', () => pm.expect(pm.response.text()).to.eql(''));
`),
  },
  {
    name: 'Deleted chatroom is gone',
    method: 'GET',
    path: '/chatroom/{{chatroom_id}}',
    description: '404 after the delete.',
    test: errorTest(404, ['chatroom_not_found', 'not_found']),
  },
  {
    name: 'Deleted chatroom is not listed',
    method: 'GET',
    path: '/chatroom',
    description: 'The delete dropped the cached list.',
    test: lines(`
${statusTest(200).join('\n')}
${schemaTest('ChatroomList').join('\n')}
pm.test('the room is not listed', () => {
    const ids = pm.response.json().chatrooms.map((room) => room.id);
    pm.expect(ids).to.not.include(Number(pm.variables.get('chatroom_id')));
});
`),
  },
]);

const account = folder('Account deletion', 'Last of all: delete the account and everything in it.', [
  {
    name: 'Delete my account with a wrong password',
    method: 'DELETE',
    path: '/user/me',
    description: 'Every proof sent must be right: 400 `wrong_password`, and nothing is deleted.',
    body: { password: 'not the password' },
    test: errorTest(400, 'wrong_password'),
  },
  {
    name: 'Delete my account',
    method: 'DELETE',
    path: '/user/me',
    description: 'Confirmed with the password (`password`), or, for an account without one, `otp`: a code of '
      + 'purpose `delete` from POST /auth/send-otp. The Stripe subscription is cancelled, then every room, message, '
      + 'file, share and code of the user is deleted and every token refused. 204; cannot be undone.',
    body: { password: '{{password}}' },
    test: lines(`
${statusTest(204).join('\n')}
pm.test('no body', () => pm.expect(pm.response.text()).to.eql(''));
`),
  },
  {
    name: 'Old token after deletion',
    method: 'GET',
    path: '/user/me',
    description: 'The deleted user\'s tokens are refused: 401.',
    test: errorTest(401, ['token_invalid', 'token_revoked']),
  },
]);

// Runs before every request: publishes the JSON Schemas of API.md's bodies (used by pm.response.to.have.jsonSchema).
const COMMON_PRE = [
  ...lines(SCHEMA_SOURCE),
  "pm.variables.set('schemas', JSON.stringify(SCHEMAS));",
];

// Runs after every request: the error shape of API.md for every non-2xx, X-Request-ID, no stack traces.
const COMMON_TEST = lines(`
const code = pm.response.code;
pm.test('[common] X-Request-ID header', () => pm.response.to.have.header('X-Request-ID'));
if (code >= 400) {
    pm.test('[common] error shape {code, status, error, message}', () => {
        pm.expect(pm.response.headers.get('Content-Type')).to.include('application/json');
        const body = pm.response.json();
        pm.expect(body).to.be.an('object');
        pm.expect(body.code).to.eql(code);
        pm.expect(body.status).to.be.a('string').and.not.empty;
        pm.expect(body.status.toLowerCase()).to.eql(String(pm.response.status).toLowerCase());
        pm.expect(body.error).to.match(/^[a-z][a-z0-9_]*$/);
        pm.expect(body.message).to.be.a('string').and.not.empty;
        if (Object.prototype.hasOwnProperty.call(body, 'errors')) { pm.expect(body.errors).to.be.an('object'); }
        pm.expect(pm.response.text()).to.not.match(/Traceback|<html/i);
    });
    if (code === 429) {
        pm.test('[common] 429 has Retry-After', () => pm.response.to.have.header('Retry-After'));
    }
}
`);

const VARIABLES = [
  ['baseUrl', 'http://127.0.0.1:8000', 'The API root.'],
  ['phone', '', 'Generated by the sign-up pre-request script (+1 202-555-01xx).'],
  ['password', 'correct horse battery', 'Password set at sign-up; replaced by the change-password request.'],
  ['new_password', '', 'Generated by the change-password pre-request script.'],
  ['otp', '', 'Captured from send-otp (OTP_DELIVERY=response).'],
  ['user_id', '', ''],
  ['access_token', '', 'Captured from verify-otp, login, refresh, change-password.'],
  ['refresh_token', '', ''],
  ['chatroom_id', '', ''],
  ['chatroom_name', '', ''],
  ['message_id', '', 'The user message posted.'],
  ['reply_id', '', 'Its model reply; from "Regenerate reply" on, the regenerated one.'],
  ['first_reply_id', '', 'The first reply, once it has a regenerated sibling.'],
  ['edited_message_id', '', 'The edited first question (a new branch).'],
  ['edited_reply_id', '', 'Its reply.'],
  ['idempotency_key', '', ''],
  ['file_id', '', 'The PNG uploaded (postman/fixtures/pixel.png).'],
  ['file_message_id', '', 'The question sent with the file.'],
  ['file_reply_id', '', 'Its reply.'],
  ['share_id', '', 'The share link of the room.'],
];

const collection = {
  info: {
    _postman_id: '6f1c2a4e-8d0b-4f3e-9a57-2b1d0c9e7f10',
    name: 'gemini-backend',
    description: 'The gemini-backend REST API (see API.md) as a runnable flow: sign-up → OTP login → password '
      + 'login → refresh → profile and usage → chatrooms → messages (202, long-poll, page, SSE stream, retry, '
      + 'feedback, regenerate, stop, edit, switch branch) → files and your data (upload, ask about a file, search, '
      + 'export, share links) → subscription → webhook → error cases → password change, logout and cleanup → '
      + 'account deletion.\n\n'
      + 'Run it in order (Collection Runner or `postman/run.sh`, which starts a fresh server and runs newman). '
      + 'Every request tests its status and response shape; the collection-level test checks the error shape '
      + '`{code, status, error, message}` of every non-2xx answer.\n\n'
      + 'Needs a server with `OTP_DELIVERY=response` (the development default). Set `baseUrl` in the '
      + '`gemini-backend local` environment.',
    schema: SCHEMA_URL,
  },
  auth: { type: 'bearer', bearer: [{ key: 'token', value: '{{access_token}}', type: 'string' }] },
  event: [
    { listen: 'prerequest', script: { type: 'text/javascript', exec: COMMON_PRE } },
    { listen: 'test', script: { type: 'text/javascript', exec: COMMON_TEST } },
  ],
  variable: VARIABLES.map(([key, value, description]) => ({ key, value, type: 'string', ...(description ? { description } : {}) })),
  item: [auth, user, chatrooms, messages, filesAndData, subscription, webhook, errors, teardown, account],
};

const environment = {
  id: '0c7f3c5e-2b8a-4d61-9e0f-5a4b3c2d1e00',
  name: 'gemini-backend local',
  values: VARIABLES.filter(([key]) => ['baseUrl', 'phone', 'access_token', 'refresh_token', 'chatroom_id',
    'message_id', 'reply_id'].includes(key))
    .map(([key, value]) => ({
      key,
      value,
      type: key.endsWith('_token') ? 'secret' : 'default',
      enabled: true,
    })),
  _postman_variable_scope: 'environment',
};

function write(name, data) {
  fs.writeFileSync(path.join(OUT_DIR, name), JSON.stringify(data, null, 2) + '\n');
  console.log('wrote postman/' + name);
}

write('gemini-backend.postman_collection.json', collection);
write('local.postman_environment.json', environment);
