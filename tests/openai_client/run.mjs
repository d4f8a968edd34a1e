// Checks an rwkv-edge server with the official `openai` npm client (v4): the shapes that client
// code relies on, for completions and chat completions, streamed and not.
//
//   node run.mjs http://127.0.0.1:8080 [API_KEY]
//
// The key may also come from RWKV_EDGE_API_KEY. Prints one line per check and a closing
// "openai client: N passed, N failed"; exits 1 when any check failed, 2 on bad usage.
import OpenAI from 'openai';

const [baseArg, keyArg] = process.argv.slice(2);
if (!baseArg || baseArg === '-h' || baseArg === '--help') {
  console.log('usage: node run.mjs BASE_URL [API_KEY]   (e.g. http://127.0.0.1:8080)');
  process.exit(baseArg ? 0 : 2);
}
const apiKey = keyArg || process.env.RWKV_EDGE_API_KEY || '';
const baseURL = baseArg.replace(/\/+$/, '').replace(/\/v1$/, '') + '/v1';
// The client insists on a key; a server without keys ignores the header.
const client = new OpenAI({ baseURL, apiKey: apiKey || 'no-key', maxRetries: 0, timeout: 120_000 });

const MAX_TOKENS = 16;
const PROMPT = 'The capital of France is';
let passed = 0;
let failed = 0;

class CheckError extends Error {}
function expect(cond, what) {
  if (!cond) throw new CheckError(what);
}
async function check(name, fn) {
  const t0 = Date.now();
  try {
    const note = await fn();
    passed++;
    console.log(`ok    ${name} (${Date.now() - t0} ms)${note ? ': ' + note : ''}`);
  } catch (e) {
    failed++;
    const why = e instanceof CheckError ? e.message : `${e?.constructor?.name ?? 'Error'}: ${e?.message ?? e}`;
    console.log(`FAIL  ${name}: ${why}`);
  }
}

function checkUsage(usage, where) {
  expect(usage && typeof usage === 'object', `${where}: no usage object`);
  for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens']) {
    expect(Number.isInteger(usage[k]) && usage[k] >= 0, `${where}: usage.${k} is not a non-negative integer`);
  }
  expect(usage.total_tokens === usage.prompt_tokens + usage.completion_tokens,
    `${where}: usage.total_tokens != prompt_tokens + completion_tokens`);
  expect(usage.prompt_tokens > 0, `${where}: usage.prompt_tokens is 0 for a non-empty prompt`);
  expect(usage.completion_tokens <= MAX_TOKENS, `${where}: usage.completion_tokens > max_tokens`);
}

function checkFinish(reason, text, where) {
  expect(reason === 'stop' || reason === 'length', `${where}: finish_reason ${JSON.stringify(reason)}`);
  expect(text.length > 0 || reason === 'length', `${where}: empty text and finish_reason ${reason}`);
}

function short(text) {
  return JSON.stringify(text.length > 40 ? text.slice(0, 40) + '...' : text);
}

let model = '';
await check('models.list', async () => {
  const page = await client.models.list();
  const ids = page.data.map((m) => m.id);
  expect(ids.length > 0, 'no models listed');
  expect(ids.every((id) => typeof id === 'string' && id.length > 0), 'a model id is not a non-empty string');
  expect(page.data.every((m) => m.object === 'model'), 'an entry is not object "model"');
  model = ids[0];
  return ids.join(', ');
});
model ||= 'default';

await check('completions.create (stream: false)', async () => {
  const r = await client.completions.create({ model, prompt: PROMPT, max_tokens: MAX_TOKENS, temperature: 0 });
  expect(r.object === 'text_completion', `object is ${JSON.stringify(r.object)}`);
  expect(typeof r.id === 'string' && r.id.length > 0, 'no id');
  expect(Array.isArray(r.choices) && r.choices.length === 1, 'choices is not one element');
  const c = r.choices[0];
  expect(typeof c.text === 'string', 'choices[0].text is not a string');
  checkFinish(c.finish_reason, c.text, 'choices[0]');
  checkUsage(r.usage, 'response');
  return `${short(c.text)}, ${r.usage.completion_tokens} tokens, ${c.finish_reason}`;
});

await check('completions.create (stream: true, include_usage)', async () => {
  const stream = await client.completions.create({
    model, prompt: PROMPT, max_tokens: MAX_TOKENS, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let chunks = 0;
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    chunks++;
    expect(typeof chunk.id === 'string', `chunk ${chunks}: no id`);
    expect(Array.isArray(chunk.choices), `chunk ${chunks}: choices is not an array`);
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      expect(typeof c.text === 'string', `chunk ${chunks}: text is not a string`);
      expect(finish === null, `chunk ${chunks}: text after the chunk with finish_reason`);
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  expect(chunks > 0, 'no chunks');
  checkFinish(finish, text, 'stream');
  checkUsage(usage, 'usage chunk');
  return `${chunks} chunks, ${short(text)}, ${usage.completion_tokens} tokens, ${finish}`;
});

await check('chat.completions.create (stream: false)', async () => {
  const r = await client.chat.completions.create({
    model, max_tokens: MAX_TOKENS, temperature: 0,
    messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Name a colour.' }],
  });
  expect(r.object === 'chat.completion', `object is ${JSON.stringify(r.object)}`);
  expect(Array.isArray(r.choices) && r.choices.length === 1, 'choices is not one element');
  const m = r.choices[0].message;
  expect(m && m.role === 'assistant', 'message.role is not assistant');
  expect(typeof m.content === 'string', 'message.content is not a string');
  checkFinish(r.choices[0].finish_reason, m.content, 'choices[0]');
  checkUsage(r.usage, 'response');
  return `${short(m.content)}, ${r.usage.completion_tokens} tokens, ${r.choices[0].finish_reason}`;
});

await check('chat.completions.create (stream: true, include_usage)', async () => {
  const stream = await client.chat.completions.create({
    model, max_tokens: MAX_TOKENS, temperature: 0, stream: true, stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'Name a colour.' }],
  });
  let text = '';
  let chunks = 0;
  let finish = null;
  let usage = null;
  let role = null;
  for await (const chunk of stream) {
    chunks++;
    expect(chunk.object === 'chat.completion.chunk', `chunk ${chunks}: object is ${JSON.stringify(chunk.object)}`);
    expect(Array.isArray(chunk.choices), `chunk ${chunks}: choices is not an array`);
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      expect(c.delta && typeof c.delta === 'object', `chunk ${chunks}: no delta`);
      if (c.delta.role) role = c.delta.role;
      if (c.delta.content != null) {
        expect(typeof c.delta.content === 'string', `chunk ${chunks}: delta.content is not a string`);
        expect(finish === null, `chunk ${chunks}: content after the chunk with finish_reason`);
        text += c.delta.content;
      }
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  expect(chunks > 0, 'no chunks');
  expect(role === 'assistant', `no delta with role assistant (got ${JSON.stringify(role)})`);
  checkFinish(finish, text, 'stream');
  checkUsage(usage, 'usage chunk');
  return `${chunks} chunks, ${short(text)}, ${usage.completion_tokens} tokens, ${finish}`;
});

await check('unknown model is an OpenAI-shaped 4xx error', async () => {
  try {
    await client.completions.create({ model: 'no-such-model-xyz', prompt: PROMPT, max_tokens: 1 });
  } catch (e) {
    expect(e instanceof OpenAI.APIError, `threw ${e?.constructor?.name}, not an APIError`);
    expect(e.status >= 400 && e.status < 500, `status ${e.status}`);
    expect(typeof e.error?.message === 'string', 'error body has no error.message');
    expect(typeof e.error?.type === 'string', 'error body has no error.type');
    return `${e.status} ${e.error.type}`;
  }
  throw new CheckError('the request succeeded');
});

if (apiKey) {
  await check('a wrong API key is a 401', async () => {
    const wrong = new OpenAI({ baseURL, apiKey: apiKey + '-wrong', maxRetries: 0, timeout: 30_000 });
    try {
      await wrong.models.list();
    } catch (e) {
      expect(e instanceof OpenAI.AuthenticationError, `threw ${e?.constructor?.name} (status ${e?.status})`);
      return `${e.status}`;
    }
    throw new CheckError('the request succeeded');
  });
}

console.log(`openai client: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
