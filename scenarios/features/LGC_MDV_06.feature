# language: fr
@exigence=LGC.MDV.06 @exigence=LGC.MSS/UX.05
Fonctionnalité: LGC.MDV.06, LGC.MSS/UX.05 — Documents reçus par MSSanté : intégrés une fois, mises à jour signalées
  Le LGC intègre au dossier du patient — retrouvé par l'INS du document — le CDA reçu par MSSanté ; il signale
  ensuite que ce document a déjà été intégré (LGC.MDV.06) et ne l'intègre pas deux fois. Quand le confrère envoie une
  nouvelle version (remplacement, RPLC), le LGC le dit à l'utilisateur, puis garde les deux versions en signalant que
  l'ancienne est remplacée (LGC.MSS/UX.05, volet mise à jour).

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect

  Scénario: Un compte rendu reçu, intégré, puis sa nouvelle version
    Quand le médecin ouvre le dossier de "DE VINCI"
    Alors l'identité du patient est récupérée
    Étant donné un confrère a envoyé à "kit.doc0036624@medecin.mssante.fr" le compte rendu "Bilan sanguin" du patient d'INS "114026322090185"
    Quand le médecin relève sa messagerie
    Et le médecin intègre au dossier le compte rendu reçu
    Alors le compte rendu "Bilan sanguin" est dans le dossier de "DE VINCI", marqué « reçu par MSSanté », une seule fois
    Quand le médecin relève sa messagerie
    Alors le message du compte rendu est marqué « déjà intégré » et ne propose plus de l'intégrer
    Étant donné le confrère envoie une nouvelle version du compte rendu, qui remplace la précédente
    Quand le médecin relève sa messagerie
    Alors le message est signalé comme la nouvelle version d'un document déjà intégré
    Quand le médecin intègre au dossier le compte rendu reçu
    Alors le dossier de "DE VINCI" tient les deux versions de "Bilan sanguin", l'ancienne signalée comme remplacée
    Et la messagerie a remis chaque message au LGC par IMAP, et le LGC ne l'a intégré qu'une fois
