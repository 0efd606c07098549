// Screenshot of Label Studio's labeling page with vlal's pre-annotation (docs/img/labeling.png).
//
// Headless Debian Chromium driven by playwright-core (npm; no browser download):
//   npm install playwright-core   (in any scratch folder; run with NODE_PATH=<it>/node_modules)
//   LS_URL=http://127.0.0.1:8089 LS_EMAIL=... LS_PASSWORD=... LS_PROJECT=1 LS_TASK=1 OUT=labeling.png \
//     node docs/img/labeling_screenshot.js
const { chromium } = require("playwright-core");

(async () => {
  const env = process.env;
  const browser = await chromium.launch({
    executablePath: env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    await page.goto(`${env.LS_URL}/user/login/`);
    await page.fill("input[name=email]", env.LS_EMAIL);
    await page.fill("input[name=password]", env.LS_PASSWORD);
    await Promise.all([page.waitForNavigation(), page.click("button[type=submit], input[type=submit]")]);
    await page.goto(`${env.LS_URL}/projects/${env.LS_PROJECT}/data?task=${env.LS_TASK}`);
    await page.waitForSelector("img", { timeout: 60000 });
    await page.waitForTimeout(8000); // the labeling UI renders the prediction after the image loads
    await page.screenshot({ path: env.OUT || "labeling.png" });
  } finally {
    await browser.close();
  }
})();
