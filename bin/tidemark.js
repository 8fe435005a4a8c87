#!/usr/bin/env node
// The tidemark command; the code lives in dist/ (npm run build).
import '../dist/services/cli/main.js';
