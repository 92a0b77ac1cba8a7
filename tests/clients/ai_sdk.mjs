// One Vercel AI SDK call against the gateway, as tests/test_wire_formats.py asks for it:
//   node ai_sdk.mjs '{"provider": "anthropic"|"openai"|"openai.chat"|"google", "model", "prompt",
//                     "stream": bool, "weather": bool}'
// with HYPEREAL_URL and HYPEREAL_API_KEY set. Prints {text, usage, toolCalls, requestIds} as JSON: the
// request id of every HTTP call the SDK made (a tool loop makes two), for the test to check each was billed.
import { createAnthropic } from '@ai-sdk/anthropic';
import { createGoogleGenerativeAI } from '@ai-sdk/google';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, jsonSchema, stepCountIs, streamText, tool } from 'ai';

const spec = JSON.parse(process.argv[2]);
const base = process.env.HYPEREAL_URL;
const apiKey = process.env.HYPEREAL_API_KEY;
const requestIds = [];
const recordingFetch = async (url, init) => {
  const response = await fetch(url, init);
  requestIds.push(response.headers.get('x-request-id'));
  return response;
};
// The base URL each provider takes, as the README's Clients section gives it.
const providers = {
  anthropic: () => createAnthropic({ apiKey, baseURL: `${base}/api/v1`, fetch: recordingFetch }),
  openai: () => createOpenAI({ apiKey, baseURL: `${base}/api/v1`, fetch: recordingFetch }),
  'openai.chat': () => createOpenAI({ apiKey, baseURL: `${base}/api/v1`, fetch: recordingFetch }).chat,
  google: () => createGoogleGenerativeAI({ apiKey, baseURL: `${base}/v1beta`, fetch: recordingFetch }),
};
const tools = spec.weather ? {
  get_weather: tool({
    description: 'Current weather for a city.',
    inputSchema: jsonSchema({ type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }),
    execute: async ({ city }) => `18 degrees and sunny in ${city}`,
  }),
} : undefined;
const call = { model: providers[spec.provider]()(spec.model), prompt: spec.prompt, tools, stopWhen: stepCountIs(3) };

let text, usage, steps;
if (spec.stream) {
  const result = streamText(call);
  text = '';
  for await (const part of result.textStream) text += part;
  [usage, steps] = [await result.totalUsage, await result.steps];
} else {
  const result = await generateText(call);
  [text, usage, steps] = [result.text, result.totalUsage, result.steps];
}
const toolCalls = steps.flatMap((step) => step.toolCalls.map((c) => ({ name: c.toolName, input: c.input })));
console.log(JSON.stringify({ text, usage, toolCalls, requestIds }));
